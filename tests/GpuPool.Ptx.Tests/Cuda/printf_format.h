// The device printf of calls_kernels.cu's hello kernel, shared with printf_reference.c, which prints the same lines with
// the host's C library: the engine's output must match it character for character.
#define HELLO_FORMAT "block %d thread %2u of %-3d|%5.2f|%e|%g|%G|%s|%.3s|%#x|%08X|%lld|%llu|%c|%+d|% d|%o|%hhd|%hu|%%|%10.4s|%a|%.2a|%-+9.1e|%*d|\n"
#define HELLO_ARGS(block, thread, n) \
    (int)(block), (unsigned)(thread), (int)(n), (thread) * 0.5 - 3.0, (double)(thread) * 1234.5678e10, 1.0 / ((thread) + 3.0), \
    (thread) * 1e-7, "ok", "truncated", 255u + (thread), 0xbeefu * (thread), -(1LL << 40) - (long long)(thread), \
    18446744073709551615ULL - (thread), 'A' + (int)(thread), (int)(thread) - 2, (int)(thread), 8u + (thread), \
    (int)(thread) * 70, 65535u + (thread), "wide", \
    ((thread) + 1.0) / 3.0, 1.0 + (thread) / 64.0, -(double)(thread) * 123.456, (int)(thread) % 7, (int)(block)
