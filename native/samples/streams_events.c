/*
 * streams_events: three streams work at once, each copying its own pinned buffer to the device, scaling it and
 * copying it back, all asynchronously, with timing events around each stream's work. Then a cross-stream
 * dependency: stream 0 fills a buffer, records an event, and stream 1 waits for that event before copying the
 * buffer (it must see the fill). Queries, event synchronize, stream synchronize and elapsed times are
 * exercised; an event created with CU_EVENT_DISABLE_TIMING must refuse to give a time. Every buffer is checked.
 *
 *   streams_events [kernels.ptx]
 */
#define SAMPLE_NAME "streams_events"
#include "sample_common.h"

enum { STREAMS = 3, COUNT = 200000 };

int main(int argc, char **argv)
{
    CUcontext context = open_device();
    CUmodule module;
    CUfunction scale, fill, copy;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    CHECK(cuModuleGetFunction(&scale, module, "scale_f32"));
    CHECK(cuModuleGetFunction(&fill, module, "fill_f32"));
    CHECK(cuModuleGetFunction(&copy, module, "copy_f32"));

    const size_t bytes = COUNT * sizeof(float);
    CUstream streams[STREAMS];
    CUevent started[STREAMS], finished[STREAMS];
    CUdeviceptr device[STREAMS];
    float *in[STREAMS], *out[STREAMS];
    float factors[STREAMS];
    unsigned long long count = COUNT;

    for (int s = 0; s < STREAMS; s++) {
        CHECK(s == 0 ? cuStreamCreate(&streams[s], CU_STREAM_NON_BLOCKING) : cuStreamCreateWithPriority(&streams[s], CU_STREAM_DEFAULT, 0));
        CHECK(cuEventCreate(&started[s], CU_EVENT_DEFAULT));
        CHECK(cuEventCreate(&finished[s], CU_EVENT_BLOCKING_SYNC));
        CHECK(cuMemAlloc(&device[s], bytes));
        CHECK(cuMemAllocHost((void **)&in[s], bytes));
        CHECK(cuMemAllocHost((void **)&out[s], bytes));
        factors[s] = (float)(s + 2);
        for (int i = 0; i < COUNT; i++) {
            in[s][i] = (float)(i % 1000) + (float)s * 0.25f;
            out[s][i] = -1.0f;
        }
    }

    /* All streams' work is queued before any of it is waited for. */
    for (int s = 0; s < STREAMS; s++) {
        void *params[] = { &count, &factors[s], &device[s] };
        CHECK(cuEventRecord(started[s], streams[s]));
        CHECK(cuMemcpyHtoDAsync(device[s], in[s], bytes, streams[s]));
        CHECK(cuLaunchKernel(scale, 128, 1, 1, 256, 1, 1, 0, streams[s], params, NULL));
        CHECK(cuMemcpyDtoHAsync(out[s], device[s], bytes, streams[s]));
        CHECK(cuEventRecord(finished[s], streams[s]));
    }

    /* Poll the first stream's event (bounded), then wait for each properly. */
    for (int polls = 0; polls < 100000 && cuEventQuery(finished[0]) == CUDA_ERROR_NOT_READY; polls++) {
    }
    size_t wrong = 0;
    float total_ms = 0;
    for (int s = 0; s < STREAMS; s++) {
        float ms = -1;
        CHECK(cuEventSynchronize(finished[s]));
        CHECK(cuStreamSynchronize(streams[s]));
        CHECK(cuStreamQuery(streams[s]));
        CHECK(cuEventQuery(finished[s]));
        CHECK(cuEventElapsedTime(&ms, started[s], finished[s]));
        if (ms < 0) {
            fprintf(stderr, "stream %d: elapsed time %g ms is negative\n", s, ms);
            wrong++;
        }
        total_ms += ms;
        for (int i = 0; i < COUNT; i++) {
            if (out[s][i] != in[s][i] * factors[s]) {
                if (wrong++ < 5) {
                    fprintf(stderr, "stream %d: out[%d] = %g, expected %g\n", s, i, out[s][i], in[s][i] * factors[s]);
                }
            }
        }
    }

    /* Cross-stream: stream 1 waits for stream 0's fill through an event. */
    CUdeviceptr produced, consumed;
    CUevent filled, untimed;
    CHECK(cuMemAlloc(&produced, bytes));
    CHECK(cuMemAlloc(&consumed, bytes));
    CHECK(cuEventCreate(&filled, CU_EVENT_DISABLE_TIMING));
    CHECK(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
    float value = 3.0f;
    void *fill_params[] = { &count, &value, &produced };
    void *copy_params[] = { &count, &produced, &consumed };
    CHECK(cuLaunchKernel(fill, 256, 1, 1, 256, 1, 1, 0, streams[0], fill_params, NULL));
    CHECK(cuEventRecord(filled, streams[0]));
    CHECK(cuStreamWaitEvent(streams[1], filled, 0));
    CHECK(cuLaunchKernel(copy, 256, 1, 1, 256, 1, 1, 0, streams[1], copy_params, NULL));
    CHECK(cuMemcpyDtoHAsync(out[1], consumed, bytes, streams[1]));
    CHECK(cuEventRecord(untimed, streams[1]));
    CHECK(cuStreamSynchronize(streams[1]));
    for (int i = 0; i < COUNT; i++) {
        if (out[1][i] != value) {
            if (wrong++ < 5) {
                fprintf(stderr, "cross-stream: consumed[%d] = %g, expected %g\n", i, out[1][i], value);
            }
        }
    }

    float ms = 0;
    int timing_refused = expect_result("cuEventElapsedTime on CU_EVENT_DISABLE_TIMING events", cuEventElapsedTime(&ms, filled, untimed), CUDA_ERROR_INVALID_HANDLE);

    CHECK(cuCtxSynchronize());
    for (int s = 0; s < STREAMS; s++) {
        CHECK(cuEventDestroy(started[s]));
        CHECK(cuEventDestroy(finished[s]));
        CHECK(cuStreamDestroy(streams[s]));
        CHECK(cuMemFree(device[s]));
        CHECK(cuMemFreeHost(in[s]));
        CHECK(cuMemFreeHost(out[s]));
    }
    CHECK(cuEventDestroy(filled));
    CHECK(cuEventDestroy(untimed));
    CHECK(cuMemFree(produced));
    CHECK(cuMemFree(consumed));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));

    char detail[160];
    snprintf(detail, sizeof detail, "%d streams and a cross-stream wait, %zu wrong values, %.2f ms of device time in all", STREAMS, wrong, total_ms);
    verdict(wrong == 0 && timing_refused, detail);
    return 0;
}
