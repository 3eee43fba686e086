// Optimizer steps, elementwise over n parameters, with the cpu backend's formulas operation for operation.
#include "gpupool_device.h"

// w -= lr · (g + weight_decay · w)
extern "C" __global__ void sgd_f32(u64 n, float lr, float weight_decay, float* w, const float* g)
{
    GP_GRID_STRIDE(i, n)
    {
        float wi = w[i];
        w[i] = wi - lr * (g[i] + weight_decay * wi);
    }
}

// v = momentum · v + g; w -= lr · v
extern "C" __global__ void sgd_momentum_f32(u64 n, float lr, float momentum, float* w, const float* g, float* v)
{
    GP_GRID_STRIDE(i, n)
    {
        float vi = momentum * v[i] + g[i];
        v[i] = vi;
        w[i] = w[i] - lr * vi;
    }
}

// Adam with bias correction, step counting from 1:
//   m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  w -= lr · (m·c1) / (√(v·c2) + eps)
// with c1 = 1/(1-β1^step), c2 = 1/(1-β2^step) computed in double (1 - β^step loses most of its digits in
// float when β is close to 1) and rounded to float once. step < 1 makes the cpu backend fail the launch;
// this kernel writes nothing.
extern "C" __global__ void adam_f32(u64 n, float lr, float beta1, float beta2, float eps, int step, float* w, const float* g, float* m, float* v)
{
    if (step < 1)
    {
        return;
    }
    float c1 = (float)(1.0 / (1.0 - gp_powi(beta1, step)));
    float c2 = (float)(1.0 / (1.0 - gp_powi(beta2, step)));
    float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
    GP_GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float mi = beta1 * m[i] + one_minus_b1 * gi;
        float vi = beta2 * v[i] + one_minus_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] - lr * (mi * c1) / (gp_sqrt(vi * c2) + eps);
    }
}
