/*
 * A stand-in for libcuda.so.1 and libnvidia-ml.so.1, for testing the cuda backend on machines without a GPU.
 * "Device memory" is host memory; work runs synchronously inside the call that submits it. It is strict where
 * the real driver is strict in ways the backend must respect:
 *   - calls that act on the current context fail with CUDA_ERROR_INVALID_CONTEXT when none is current;
 *   - a stream or event used while another context is current fails with CUDA_ERROR_INVALID_HANDLE;
 *   - copies and memsets must stay inside allocations of the current context (else CUDA_ERROR_INVALID_VALUE);
 *   - a kernel that touches memory outside its context's allocations faults: the context's sticky
 *     CUDA_ERROR_ILLEGAL_ADDRESS is returned by every later call on it, as on a GPU.
 * Kernels are found by name: noop, fill_f32, axpy_f32 (the built-in library's signatures) and mock_scale
 * (u64 n, f32 alpha, ptr x), a "client" kernel. A module's variables are its lines `[.visible] .global|.const [.align N]
 * .TYPE name[;| [N]...]`, allocated in its context when it loads (initialized from a `.b8` array's byte list, else
 * zeroed) and freed when it unloads. Written from the CUDA driver API and NVML references.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
    OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, NO_DEVICE = 100, INVALID_DEVICE = 101,
    INVALID_CONTEXT = 201, INVALID_PTX = 218, INVALID_HANDLE = 400, NOT_FOUND = 500, NOT_READY = 600, ILLEGAL_ADDRESS = 700,
};

#define TOTAL_MEMORY (8ULL << 30)
#define MAX_ALLOCS 4096
#define MAX_STACK 32

typedef struct ctx {
    int magic, device, primary;
    CUresult sticky;
    long overhead, streams, events, modules; /* what destroying the context frees */
    struct { CUdeviceptr base; size_t size; } allocs[MAX_ALLOCS];
    int nallocs;
} ctx_t;

typedef struct { int magic; ctx_t *ctx; } stream_t;
typedef struct { int magic; ctx_t *ctx; int recorded; double ms; } event_t;
#define MAX_GLOBALS 16
typedef struct { char name[64]; CUdeviceptr base; size_t size; } global_t;
typedef struct { int magic; ctx_t *ctx; char *text; global_t globals[MAX_GLOBALS]; int nglobals; } module_t;
typedef struct { int magic; module_t *module; char name[128]; } function_t;

#define CTX_MAGIC 0x43545831
#define STREAM_MAGIC 0x53545231
#define EVENT_MAGIC 0x45564e31
#define MODULE_MAGIC 0x4d4f4431
#define FUNCTION_MAGIC 0x46554e31

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static ctx_t *primary;
static int primary_refs;
static size_t used_bytes;
static long live_contexts, live_allocations, live_streams, live_events, live_modules, pinned_buffers, launches, context_overhead = 64 << 20;
static __thread ctx_t *stack[MAX_STACK];
static __thread int depth;

static ctx_t *current(void) { return depth > 0 ? stack[depth - 1] : NULL; }

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Test hooks: counters, and settings tests may change. */
long mock_stat(const char *name)
{
    if (!strcmp(name, "contexts")) return live_contexts;
    if (!strcmp(name, "allocations")) return live_allocations;
    if (!strcmp(name, "streams")) return live_streams;
    if (!strcmp(name, "events")) return live_events;
    if (!strcmp(name, "modules")) return live_modules;
    if (!strcmp(name, "pinned")) return pinned_buffers;
    if (!strcmp(name, "launches")) return launches;
    if (!strcmp(name, "used")) return (long)used_bytes;
    return -1;
}

void mock_set(const char *name, long value)
{
    if (!strcmp(name, "context_overhead")) context_overhead = value;
}

/* ---------------------------------------------------------------- init, errors, devices */

CUresult cuInit(unsigned flags)
{
    const char *forced = getenv("MOCK_CUDA_INIT_RESULT");
    if (flags != 0) return INVALID_VALUE;
    if (forced) return atoi(forced);
    initialized = 1;
    return OK;
}

CUresult cuDriverGetVersion(int *version) { *version = 12040; return OK; }

static const char *names[][2] = {
    {"0", "CUDA_SUCCESS"}, {"1", "CUDA_ERROR_INVALID_VALUE"}, {"2", "CUDA_ERROR_OUT_OF_MEMORY"}, {"3", "CUDA_ERROR_NOT_INITIALIZED"},
    {"100", "CUDA_ERROR_NO_DEVICE"}, {"101", "CUDA_ERROR_INVALID_DEVICE"}, {"201", "CUDA_ERROR_INVALID_CONTEXT"}, {"218", "CUDA_ERROR_INVALID_PTX"},
    {"400", "CUDA_ERROR_INVALID_HANDLE"}, {"500", "CUDA_ERROR_NOT_FOUND"}, {"600", "CUDA_ERROR_NOT_READY"}, {"700", "CUDA_ERROR_ILLEGAL_ADDRESS"},
};

CUresult cuGetErrorName(CUresult error, const char **name)
{
    char code[16];
    snprintf(code, sizeof code, "%d", error);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i][0], code)) { *name = names[i][1]; return OK; }
    *name = NULL;
    return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **text)
{
    const char *name;
    if (cuGetErrorName(error, &name) != OK) { *text = NULL; return INVALID_VALUE; }
    *text = "mock driver error";
    return OK;
}

CUresult cuDeviceGetCount(int *count) { if (!initialized) return NOT_INITIALIZED; *count = 1; return OK; }

CUresult cuDeviceGet(int *device, int ordinal) { if (ordinal != 0) return INVALID_DEVICE; *device = 0; return OK; }

CUresult cuDeviceGetName(char *name, int length, int device)
{
    if (device != 0) return INVALID_DEVICE;
    snprintf(name, (size_t)length, "GpuPool Mock GPU");
    return OK;
}

static const unsigned char uuid_bytes[16] = {0x8b, 0x1a, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09};

CUresult cuDeviceGetUuid(unsigned char *uuid, int device) { if (device != 0) return INVALID_DEVICE; memcpy(uuid, uuid_bytes, 16); return OK; }

CUresult cuDeviceTotalMem_v2(size_t *bytes, int device) { if (device != 0) return INVALID_DEVICE; *bytes = TOTAL_MEMORY; return OK; }

CUresult cuDeviceGetAttribute(int *value, int attribute, int device)
{
    if (device != 0) return INVALID_DEVICE;
    switch (attribute) {
    case 1: case 2: case 3: *value = 1024; return OK;
    case 4: *value = 64; return OK;
    case 5: *value = 2147483647; return OK;
    case 6: case 7: *value = 65535; return OK;
    case 8: *value = 48 * 1024; return OK;
    case 10: *value = 32; return OK;
    case 16: *value = 4; return OK;
    case 75: *value = 9; return OK;
    case 76: *value = 0; return OK;
    default: return INVALID_VALUE;
    }
}

/* ---------------------------------------------------------------- contexts */

static ctx_t *new_context(int is_primary)
{
    ctx_t *c = calloc(1, sizeof *c);
    c->magic = CTX_MAGIC;
    c->primary = is_primary;
    c->overhead = context_overhead;
    used_bytes += (size_t)context_overhead;
    live_contexts++;
    return c;
}

static void free_context(ctx_t *c)
{
    for (int i = 0; i < c->nallocs; i++) { free((void *)(uintptr_t)c->allocs[i].base); used_bytes -= c->allocs[i].size; live_allocations--; }
    used_bytes -= (size_t)c->overhead;
    live_contexts--;
    /* Its streams, events and modules go with it (the mock leaks their small records rather than track them). */
    __atomic_sub_fetch(&live_streams, c->streams, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&live_events, c->events, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&live_modules, c->modules, __ATOMIC_SEQ_CST);
    c->magic = 0;
    free(c);
}

static int push(ctx_t *c) { if (depth == MAX_STACK) return 0; stack[depth++] = c; return 1; }

CUresult cuCtxCreate_v2(ctx_t **context, unsigned flags, int device)
{
    if (!initialized) return NOT_INITIALIZED;
    if (device != 0) return INVALID_DEVICE;
    (void)flags;
    pthread_mutex_lock(&lock);
    ctx_t *c = new_context(0);
    pthread_mutex_unlock(&lock);
    if (!push(c)) return INVALID_VALUE;
    *context = c;
    return OK;
}

CUresult cuCtxDestroy_v2(ctx_t *c)
{
    if (!c || c->magic != CTX_MAGIC || c->primary) return INVALID_CONTEXT;
    for (int i = 0; i < depth; i++) if (stack[i] == c) stack[i] = NULL;
    pthread_mutex_lock(&lock);
    free_context(c);
    pthread_mutex_unlock(&lock);
    return OK;
}

CUresult cuCtxPushCurrent_v2(ctx_t *c) { if (!c || c->magic != CTX_MAGIC) return INVALID_CONTEXT; return push(c) ? OK : INVALID_VALUE; }

CUresult cuCtxPopCurrent_v2(ctx_t **c) { if (depth == 0) return INVALID_CONTEXT; ctx_t *top = stack[--depth]; if (c) *c = top; return OK; }

CUresult cuCtxSetCurrent(ctx_t *c)
{
    if (c && c->magic != CTX_MAGIC) return INVALID_CONTEXT;
    if (!c) { if (depth > 0) depth--; return OK; }
    if (depth == 0) depth = 1;
    stack[depth - 1] = c;
    return OK;
}

CUresult cuDevicePrimaryCtxRetain(ctx_t **c, int device)
{
    if (device != 0) return INVALID_DEVICE;
    pthread_mutex_lock(&lock);
    if (!primary) primary = new_context(1);
    primary_refs++;
    *c = primary;
    pthread_mutex_unlock(&lock);
    return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(int device)
{
    if (device != 0) return INVALID_DEVICE;
    pthread_mutex_lock(&lock);
    if (primary && --primary_refs == 0) { free_context(primary); primary = NULL; }
    pthread_mutex_unlock(&lock);
    return OK;
}

/* The context a call acts on: the current one, whose sticky fault every call reports. */
#define CURRENT(c)                                          \
    ctx_t *c = current();                                   \
    if (!c || c->magic != CTX_MAGIC) return INVALID_CONTEXT; \
    if (c->sticky) return c->sticky

/* ---------------------------------------------------------------- memory */

static int inside(ctx_t *c, CUdeviceptr p, size_t n)
{
    for (int i = 0; i < c->nallocs; i++)
        if (p >= c->allocs[i].base && p - c->allocs[i].base <= c->allocs[i].size && n <= c->allocs[i].size - (p - c->allocs[i].base)) return 1;
    return 0;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
    CURRENT(c);
    (void)c;
    pthread_mutex_lock(&lock);
    *total = TOTAL_MEMORY;
    *free_bytes = TOTAL_MEMORY - used_bytes;
    pthread_mutex_unlock(&lock);
    return OK;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes)
{
    CURRENT(c);
    if (bytes == 0) return INVALID_VALUE;
    pthread_mutex_lock(&lock);
    if (bytes > TOTAL_MEMORY - used_bytes || c->nallocs == MAX_ALLOCS) { pthread_mutex_unlock(&lock); return OUT_OF_MEMORY; }
    void *memory = aligned_alloc(256, (bytes + 255) / 256 * 256);
    memset(memory, 0xAB, bytes); /* as a GPU, new memory holds whatever was there */
    c->allocs[c->nallocs].base = (CUdeviceptr)(uintptr_t)memory;
    c->allocs[c->nallocs].size = bytes;
    c->nallocs++;
    used_bytes += bytes;
    live_allocations++;
    pthread_mutex_unlock(&lock);
    *p = (CUdeviceptr)(uintptr_t)memory;
    return OK;
}

CUresult cuMemFree_v2(CUdeviceptr p)
{
    CURRENT(c);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < c->nallocs; i++) {
        if (c->allocs[i].base == p) {
            used_bytes -= c->allocs[i].size;
            live_allocations--;
            c->allocs[i] = c->allocs[--c->nallocs];
            pthread_mutex_unlock(&lock);
            free((void *)(uintptr_t)p);
            return OK;
        }
    }
    pthread_mutex_unlock(&lock);
    return INVALID_VALUE;
}

CUresult cuMemHostAlloc(void **p, size_t bytes, unsigned flags)
{
    CURRENT(c);
    (void)c;
    (void)flags;
    *p = malloc(bytes);
    __atomic_add_fetch(&pinned_buffers, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuMemFreeHost(void *p) { free(p); __atomic_sub_fetch(&pinned_buffers, 1, __ATOMIC_SEQ_CST); return OK; }

/* A stream must belong to the current context. */
#define STREAM(c, s)                                                       \
    if (!(s) || (s)->magic != STREAM_MAGIC || (s)->ctx != (c)) return INVALID_HANDLE

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    if (!inside(c, dst, n)) return INVALID_VALUE;
    memcpy((void *)(uintptr_t)dst, src, n);
    return OK;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    if (!inside(c, src, n)) return INVALID_VALUE;
    memcpy(dst, (void *)(uintptr_t)src, n);
    return OK;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    if (!inside(c, dst, n) || !inside(c, src, n)) return INVALID_VALUE;
    if (dst < src + n && src < dst + n) {
        /* Undefined on a GPU: the mock makes an overlapping copy visibly wrong. */
        for (size_t i = 0; i < n; i++) ((unsigned char *)(uintptr_t)dst)[i] = 0xEE;
        return OK;
    }
    memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    return OK;
}

#define MEMSET(T, name)                                                        \
    CUresult name(CUdeviceptr dst, T value, size_t count, stream_t *s)         \
    {                                                                          \
        CURRENT(c);                                                            \
        if (s && s != (stream_t *)0) { STREAM(c, s); }                         \
        if (dst % sizeof(T) || !inside(c, dst, count * sizeof(T))) return INVALID_VALUE; \
        for (size_t i = 0; i < count; i++) ((T *)(uintptr_t)dst)[i] = value;   \
        return OK;                                                             \
    }
MEMSET(unsigned char, cuMemsetD8Async)
MEMSET(unsigned short, cuMemsetD16Async)
MEMSET(unsigned int, cuMemsetD32Async)

/* ---------------------------------------------------------------- streams and events */

CUresult cuStreamCreate(stream_t **s, unsigned flags)
{
    CURRENT(c);
    if (flags != 1) return INVALID_VALUE; /* the backend's streams must not synchronize with the legacy stream */
    *s = calloc(1, sizeof **s);
    (*s)->magic = STREAM_MAGIC;
    (*s)->ctx = c;
    __atomic_add_fetch(&c->streams, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&live_streams, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuStreamDestroy_v2(stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    s->magic = 0;
    free(s);
    __atomic_sub_fetch(&c->streams, 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&live_streams, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuStreamSynchronize(stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    return OK;
}

CUresult cuEventCreate(event_t **e, unsigned flags)
{
    CURRENT(c);
    (void)flags;
    *e = calloc(1, sizeof **e);
    (*e)->magic = EVENT_MAGIC;
    (*e)->ctx = c;
    __atomic_add_fetch(&c->events, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&live_events, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuEventDestroy_v2(event_t *e)
{
    if (!e || e->magic != EVENT_MAGIC || !e->ctx || e->ctx->magic != CTX_MAGIC) return INVALID_HANDLE;
    e->magic = 0;
    __atomic_sub_fetch(&e->ctx->events, 1, __ATOMIC_SEQ_CST);
    free(e);
    __atomic_sub_fetch(&live_events, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuEventRecord(event_t *e, stream_t *s)
{
    CURRENT(c);
    STREAM(c, s);
    if (!e || e->magic != EVENT_MAGIC || e->ctx != c) return INVALID_HANDLE;
    e->recorded = 1;
    e->ms = now_ms();
    return OK;
}

CUresult cuEventSynchronize(event_t *e)
{
    CURRENT(c);
    if (!e || e->magic != EVENT_MAGIC || e->ctx != c) return INVALID_HANDLE;
    return OK;
}

CUresult cuEventElapsedTime(float *ms, event_t *a, event_t *b)
{
    CURRENT(c);
    if (!a || a->magic != EVENT_MAGIC || !b || b->magic != EVENT_MAGIC || a->ctx != c || b->ctx != c) return INVALID_HANDLE;
    if (!a->recorded || !b->recorded) return INVALID_HANDLE;
    *ms = (float)(b->ms - a->ms);
    return OK;
}

/* ---------------------------------------------------------------- modules and launches */

/* Reads the module's variable declarations (one per line) and allocates each in the context, as the driver does at load. */
static void place_globals(ctx_t *c, module_t *m)
{
    for (const char *line = m->text; line && *line && m->nglobals < MAX_GLOBALS && c->nallocs < MAX_ALLOCS; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!strncmp(p, ".visible ", 9)) p += 9;
        if (strncmp(p, ".global ", 8) && strncmp(p, ".const ", 7)) continue;
        p = strchr(p, ' ') + 1;
        if (!strncmp(p, ".align ", 7)) { p += 7; while (*p && *p != ' ') p++; p++; }
        size_t type = !strncmp(p + 2, "64 ", 3) ? 8 : !strncmp(p + 2, "32 ", 3) ? 4 : !strncmp(p + 2, "16 ", 3) ? 2 : 1;
        p = strchr(p, ' ');
        if (!p) continue;
        p++;
        global_t *g = &m->globals[m->nglobals];
        size_t n = 0;
        while (p[n] && p[n] != '[' && p[n] != ';' && p[n] != ' ' && n < sizeof g->name - 1) { g->name[n] = p[n]; n++; }
        g->name[n] = 0;
        size_t count = p[n] == '[' ? strtoull(p + n + 1, NULL, 10) : 1;
        g->size = count * type;
        void *memory = aligned_alloc(256, (g->size + 255) / 256 * 256);
        memset(memory, 0, g->size);
        const char *init = strstr(p, "= {");
        const char *end = strchr(p, '\n');
        if (type == 1 && init && (!end || init < end)) {
            char *next = (char *)init + 3;
            for (size_t i = 0; i < g->size && *next && *next != '}'; i++) {
                ((unsigned char *)memory)[i] = (unsigned char)strtol(next, &next, 10);
                while (*next == ',' || *next == ' ') next++;
            }
        }
        g->base = (CUdeviceptr)(uintptr_t)memory;
        pthread_mutex_lock(&lock);
        c->allocs[c->nallocs].base = g->base;
        c->allocs[c->nallocs].size = g->size;
        c->nallocs++;
        used_bytes += g->size;
        live_allocations++;
        pthread_mutex_unlock(&lock);
        m->nglobals++;
    }
}

CUresult cuModuleLoadDataEx(module_t **m, const void *image, unsigned count, int *options, void **values)
{
    CURRENT(c);
    const char *text = image;
    if (!strstr(text, ".entry") || strstr(text, "bogus")) {
        for (unsigned i = 0; i < count; i++)
            if (options[i] == 5) snprintf((char *)values[i], 256, "ptxas fatal   : mock: syntax error near 'bogus'");
        return INVALID_PTX;
    }

    *m = calloc(1, sizeof **m);
    (*m)->magic = MODULE_MAGIC;
    (*m)->ctx = c;
    (*m)->text = strdup(text);
    place_globals(c, *m);
    __atomic_add_fetch(&c->modules, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&live_modules, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *bytes, module_t *m, const char *name)
{
    CURRENT(c);
    if (!m || m->magic != MODULE_MAGIC || m->ctx != c) return INVALID_HANDLE;
    for (int i = 0; i < m->nglobals; i++) {
        if (!strcmp(m->globals[i].name, name)) {
            if (p) *p = m->globals[i].base;
            if (bytes) *bytes = m->globals[i].size;
            return OK;
        }
    }

    return NOT_FOUND;
}

CUresult cuModuleUnload(module_t *m)
{
    CURRENT(c);
    if (!m || m->magic != MODULE_MAGIC || m->ctx != c) return INVALID_HANDLE;
    pthread_mutex_lock(&lock);
    for (int g = 0; g < m->nglobals; g++) {
        for (int i = 0; i < c->nallocs; i++) {
            if (c->allocs[i].base == m->globals[g].base) {
                used_bytes -= c->allocs[i].size;
                live_allocations--;
                c->allocs[i] = c->allocs[--c->nallocs];
                free((void *)(uintptr_t)m->globals[g].base);
                break;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    m->magic = 0;
    free(m->text);
    free(m);
    __atomic_sub_fetch(&c->modules, 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&live_modules, 1, __ATOMIC_SEQ_CST);
    return OK;
}

CUresult cuModuleGetFunction(function_t **f, module_t *m, const char *name)
{
    CURRENT(c);
    if (!m || m->magic != MODULE_MAGIC || m->ctx != c) return INVALID_HANDLE;
    char entry[160];
    snprintf(entry, sizeof entry, ".entry %s(", name);
    if (!strstr(m->text, entry) || strlen(name) >= sizeof((*f)->name)) return NOT_FOUND;
    *f = calloc(1, sizeof **f);
    (*f)->magic = FUNCTION_MAGIC;
    (*f)->module = m;
    strcpy((*f)->name, name);
    return OK;
}

/* Parameter layouts of the kernels the mock runs: offset and size of each. */
static int layout(const char *name, size_t index, size_t *offset, size_t *size)
{
    static const size_t fill[][2] = {{0, 8}, {8, 4}, {16, 8}};
    static const size_t axpy[][2] = {{0, 8}, {8, 4}, {16, 8}, {24, 8}};
    const size_t (*table)[2] = NULL;
    size_t n = 0;
    if (!strcmp(name, "fill_f32") || !strcmp(name, "mock_scale")) { table = fill; n = 3; }
    else if (!strcmp(name, "axpy_f32")) { table = axpy; n = 4; }
    if (index >= n) return 0;
    *offset = table[index][0];
    *size = table[index][1];
    return 1;
}

CUresult cuFuncGetParamInfo(function_t *f, size_t index, size_t *offset, size_t *size)
{
    if (!f || f->magic != FUNCTION_MAGIC) return INVALID_HANDLE;
    return layout(f->name, index, offset, size) ? OK : INVALID_VALUE;
}

/* A kernel touching memory outside its context faults the context, as a GPU does. */
static float *device_floats(ctx_t *c, unsigned long long p, unsigned long long n)
{
    if (n == 0) return NULL;
    if (!inside(c, p, n * 4)) { c->sticky = ILLEGAL_ADDRESS; return NULL; }
    return (float *)(uintptr_t)p;
}

CUresult cuLaunchKernel(function_t *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, stream_t *s,
                        void **params, void **extra)
{
    CURRENT(c);
    STREAM(c, s);
    (void)shared;
    if (!f || f->magic != FUNCTION_MAGIC || f->module->ctx != c) return INVALID_HANDLE;
    if (!gx || !gy || !gz || !bx || !by || !bz || (unsigned long long)bx * by * bz > 1024) return INVALID_VALUE;
    if (extra) return INVALID_VALUE; /* the backend passes kernelParams where the driver can lay them out */
    __atomic_add_fetch(&launches, 1, __ATOMIC_SEQ_CST);
    if (!strcmp(f->name, "noop")) return OK;
    if (!params) return INVALID_VALUE;
    if (!strcmp(f->name, "fill_f32") || !strcmp(f->name, "mock_scale")) {
        unsigned long long n = *(unsigned long long *)params[0];
        float value = *(float *)params[1];
        float *y = device_floats(c, *(unsigned long long *)params[2], n);
        for (unsigned long long i = 0; y && i < n; i++) y[i] = f->name[0] == 'f' ? value : y[i] * value;
        return OK;
    }
    if (!strcmp(f->name, "axpy_f32")) {
        unsigned long long n = *(unsigned long long *)params[0];
        float alpha = *(float *)params[1];
        float *x = device_floats(c, *(unsigned long long *)params[2], n), *y = device_floats(c, *(unsigned long long *)params[3], n);
        for (unsigned long long i = 0; x && y && i < n; i++) y[i] += alpha * x[i];
        return OK;
    }
    return NOT_FOUND; /* the mock cannot run it */
}

/* ---------------------------------------------------------------- NVML */

typedef struct { unsigned long long total, free, used; } nvml_memory_t;
typedef struct { unsigned gpu, memory; } nvml_utilization_t;
static int nvml_device = 0x4e56;

int nvmlInit_v2(void) { return getenv("MOCK_NVML_INIT_RESULT") ? atoi(getenv("MOCK_NVML_INIT_RESULT")) : 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int result) { (void)result; return "mock NVML error"; }
int nvmlDeviceGetCount_v2(unsigned *count) { *count = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **device) { if (index != 0) return 2; *device = &nvml_device; return 0; }
int nvmlDeviceGetName(void *device, char *name, unsigned length) { (void)device; snprintf(name, length, "GpuPool Mock GPU"); return 0; }

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned length)
{
    (void)device;
    const unsigned char *u = uuid_bytes;
    snprintf(uuid, length, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8],
             u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *device, nvml_memory_t *memory)
{
    (void)device;
    pthread_mutex_lock(&lock);
    memory->total = TOTAL_MEMORY;
    memory->used = used_bytes;
    memory->free = TOTAL_MEMORY - used_bytes;
    pthread_mutex_unlock(&lock);
    return 0;
}

int nvmlDeviceGetUtilizationRates(void *device, nvml_utilization_t *rates) { (void)device; rates->gpu = 42; rates->memory = 7; return 0; }
int nvmlDeviceGetTemperature(void *device, int sensor, unsigned *celsius) { (void)device; if (sensor != 0) return 2; *celsius = 55; return 0; }
