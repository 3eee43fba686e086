/*
 * fork_threads: a program that forks after cuInit and then uses CUDA from several threads. The child gets
 * CUDA_ERROR_NOT_INITIALIZED (the lease's one session is the parent's) and exits through exit(), running the
 * shim's exit handlers; the parent's session must not notice. Then four threads share the parent's context,
 * each filling, reading back and freeing its own buffer.
 *
 *   fork_threads
 */
#define _POSIX_C_SOURCE 200809L
#define SAMPLE_NAME "fork_threads"
#include "sample_common.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 4, N = 1 << 16 };

static CUcontext context;

static void *worker(void *arg)
{
    unsigned int value = (unsigned int)(size_t)arg + 100;
    static unsigned int host[THREADS][N];
    unsigned int *mine = host[value - 100];
    CUdeviceptr buffer;
    CHECK(cuCtxSetCurrent(context));
    for (int round = 0; round < 20; round++) {
        CHECK(cuMemAlloc(&buffer, N * sizeof(unsigned int)));
        CHECK(cuMemsetD32(buffer, value + (unsigned int)round, N));
        CHECK(cuMemcpyDtoH(mine, buffer, N * sizeof(unsigned int)));
        CHECK(cuMemFree(buffer));
        for (int i = 0; i < N; i++) {
            if (mine[i] != value + (unsigned int)round) {
                return (void *)1;
            }
        }
    }
    return NULL;
}

int main(void)
{
    context = open_device();
    CUdeviceptr before;
    CHECK(cuMemAlloc(&before, 4096));
    CHECK(cuMemsetD8(before, 0x5a, 4096));

    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        verdict(0, "fork failed");
    }
    if (child == 0) {
        CUdeviceptr p;
        CUresult r = cuMemAlloc(&p, 4096);
        CUresult init = cuInit(0);
        printf("child: cuMemAlloc %s, cuInit %s\n", result_name(r), result_name(init));
        fflush(stdout);
        exit(r == CUDA_ERROR_NOT_INITIALIZED && init == CUDA_ERROR_NOT_INITIALIZED ? 0 : 1);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        verdict(0, "the forked child did not get CUDA_ERROR_NOT_INITIALIZED, or did not exit cleanly");
    }

    unsigned char check[4096];
    CHECK(cuMemcpyDtoH(check, before, sizeof check));
    for (size_t i = 0; i < sizeof check; i++) {
        if (check[i] != 0x5a) {
            verdict(0, "the parent's memory changed across the fork");
        }
    }

    pthread_t threads[THREADS];
    for (size_t t = 0; t < THREADS; t++) {
        if (pthread_create(&threads[t], NULL, worker, (void *)t) != 0) {
            verdict(0, "pthread_create failed");
        }
    }
    int wrong = 0;
    for (size_t t = 0; t < THREADS; t++) {
        void *result = NULL;
        pthread_join(threads[t], &result);
        wrong += result != NULL;
    }
    CHECK(cuMemFree(before));
    if (wrong) {
        verdict(0, "a thread read back values it did not write");
    }
    verdict(1, "the forked child was refused, the parent's session went on, 4 threads x 20 rounds read back what they wrote");
    return 0;
}
