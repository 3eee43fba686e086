// y = alpha * x + y, one element per thread: the SAXPY of issue 15's speed targets.
extern "C" __global__ void saxpy(unsigned int n, float alpha, const float* x, float* y)
{
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        y[i] = alpha * x[i] + y[i];
    }
}
