// Layer kernels: bias broadcast and its gradient, row-wise softmax and the fused softmax + cross-entropy,
// argmax, and the embedding lookup and its gradient. Matrices are row-major with rows·cols elements; a
// negative dimension makes the cpu backend fail the launch, and these kernels write nothing.
//
// Row-wise kernels give each row to one block (blocks stride over rows) and reduce the row in GP_ROW_LANES
// fixed lanes, so every bit of the result is independent of the launch geometry.
#include "gpupool_device.h"

// y[r,c] = x[r,c] + bias[c]
extern "C" __global__ void bias_add_f32(int rows, int cols, const float* x, const float* bias, float* y)
{
    if (rows < 0 || cols < 0)
    {
        return;
    }
    for (gp_cells cell(rows, cols); cell.more(); cell.next())
    {
        y[cell.index] = x[cell.index] + bias[cell.col];
    }
}

// y[c] = Σ_r x[r,c]. One thread per column adds the rows in order, exactly as the cpu backend does.
extern "C" __global__ void sum_columns_f32(int rows, int cols, const float* x, float* y)
{
    if (rows < 0 || cols < 0)
    {
        return;
    }
    GP_GRID_STRIDE(c, cols)
    {
        float s = 0.0f;
        for (u64 r = 0; r < (u64)rows; ++r)
        {
            s += x[r * cols + c];
        }
        y[c] = s;
    }
}

// y[0..cols) = exp(x - max(x)) for one row, by the whole block; returns Σ y and sets *row_max.
// Ends with a barrier, so the lanes may be reused and y read by any thread.
GP_DEVICE float gp_exp_shifted_row(const float* x, float* y, u64 cols, float* lanes, float* row_max)
{
    GP_FOR_LANES(l, GP_ROW_LANES)
    {
        float m = -GP_INF;
        for (u64 c = l; c < cols; c += GP_ROW_LANES)
        {
            m = gp_max(m, x[c]);
        }
        lanes[l] = m;
    }
    gp_fold_lanes(lanes, GP_ROW_LANES, gp_max_op());
    float max = lanes[0];
    __syncthreads();
    GP_FOR_LANES(l, GP_ROW_LANES)
    {
        float s = 0.0f;
        for (u64 c = l; c < cols; c += GP_ROW_LANES)
        {
            float e = gp_exp(x[c] - max);
            y[c] = e;
            s += e;
        }
        lanes[l] = s;
    }
    gp_fold_lanes(lanes, GP_ROW_LANES, gp_add_op());
    float sum = lanes[0];
    __syncthreads();
    *row_max = max;
    return sum;
}

// y = row · (1 / sum), as the cpu backend scales by the reciprocal.
GP_DEVICE void gp_scale_row(float* y, u64 cols, float sum)
{
    float inverse = 1.0f / sum;
    GP_FOR_LANES(l, GP_ROW_LANES)
    {
        for (u64 c = l; c < cols; c += GP_ROW_LANES)
        {
            y[c] = inverse * y[c];
        }
    }
}

// y = softmax(x) per row, shifted by the row's maximum so nothing overflows. y may be x.
extern "C" __global__ void softmax_rows_f32(int rows, int cols, const float* x, float* y)
{
    if (rows < 0 || cols <= 0)
    {
        return;
    }
    __shared__ float lanes[GP_ROW_LANES];
    for (u64 r = gp_block_rank(); r < (u64)rows; r += gp_block_count())
    {
        float max;
        float sum = gp_exp_shifted_row(x + r * cols, y + r * cols, cols, lanes, &max);
        gp_scale_row(y + r * cols, cols, sum);
    }
}

// probs = softmax(logits) per row; loss[r] = logsumexp(row) - logits[r, labels[r]].
// A label outside [0, cols) makes the cpu backend fail the launch before it writes anything; here every
// block checks all labels first and, finding one, writes nothing.
extern "C" __global__ void softmax_xent_forward_f32(int rows, int cols, const float* logits, const int* labels, float* probs, float* loss)
{
    if (rows < 0 || cols < 0 || !gp_indices_in_range(labels, rows, cols) || cols == 0)
    {
        return;
    }
    __shared__ float lanes[GP_ROW_LANES];
    for (u64 r = gp_block_rank(); r < (u64)rows; r += gp_block_count())
    {
        const float* row = logits + r * cols;
        float* p = probs + r * cols;
        float max;
        float sum = gp_exp_shifted_row(row, p, cols, lanes, &max);
        if (gp_local_rank() == 0)
        {
            loss[r] = max + gp_log(sum) - row[labels[r]];
        }
        // The loss reads the row before it is scaled, even where probs is logits itself.
        __syncthreads();
        gp_scale_row(p, cols, sum);
    }
}

// dlogits[r,c] = scale · (probs[r,c] - (c == labels[r] ? 1 : 0)); labels are checked as in the forward pass.
extern "C" __global__ void softmax_xent_backward_f32(int rows, int cols, float scale, const float* probs, const int* labels, float* dlogits)
{
    if (rows < 0 || cols < 0 || !gp_indices_in_range(labels, rows, cols))
    {
        return;
    }
    for (gp_cells cell(rows, cols); cell.more(); cell.next())
    {
        float p = probs[cell.index];
        dlogits[cell.index] = cell.col == (u64)labels[cell.row] ? scale * (p - 1.0f) : scale * p;
    }
}

// A candidate for a row's maximum; index -1 stands for "no element".
struct gp_arg
{
    float value;
    int index;
};

// The first maximum wins; a NaN counts as the maximum (the first NaN, then). Comparisons are float
// comparisons, so -0 and +0 tie and the earlier one wins, as in the cpu backend's first-equal search.
GP_DEVICE bool gp_argmax_takes_second(gp_arg a, gp_arg b)
{
    if (a.index < 0 || b.index < 0)
    {
        return a.index < 0;
    }
    bool a_nan = a.value != a.value, b_nan = b.value != b.value;
    if (a_nan != b_nan)
    {
        return b_nan;
    }
    if (!a_nan && a.value != b.value)
    {
        return b.value > a.value;
    }
    return b.index < a.index;
}

struct gp_argmax_op
{
    // Built field by field (not by returning a or b) so the pair stays in registers.
    GP_DEVICE gp_arg operator()(gp_arg a, gp_arg b) const
    {
        bool second = gp_argmax_takes_second(a, b);
        gp_arg winner = {second ? b.value : a.value, second ? b.index : a.index};
        return winner;
    }
};

// out[r] = the column of row r's maximum. rows > 0 with cols = 0 has no maximum: the cpu backend fails the
// launch, and this kernel writes nothing.
extern "C" __global__ void argmax_rows_f32(int rows, int cols, const float* x, int* out)
{
    if (rows < 0 || cols < 0 || (rows > 0 && cols == 0))
    {
        return;
    }
    __shared__ gp_arg lanes[GP_ROW_LANES];
    gp_argmax_op better;
    for (u64 r = gp_block_rank(); r < (u64)rows; r += gp_block_count())
    {
        const float* row = x + r * cols;
        GP_FOR_LANES(l, GP_ROW_LANES)
        {
            gp_arg best = {0.0f, -1};
            for (u64 c = l; c < (u64)cols; c += GP_ROW_LANES)
            {
                gp_arg candidate = {row[c], (int)c};
                best = better(best, candidate);
            }
            lanes[l] = best;
        }
        gp_fold_lanes(lanes, GP_ROW_LANES, better);
        if (gp_local_rank() == 0)
        {
            out[r] = lanes[0].index;
        }
        __syncthreads();
    }
}

// out[i,:] = table[indices[i],:]. cols must be at least 1, and every index in [0, table_rows): otherwise the
// cpu backend fails the launch before writing, and this kernel writes nothing.
extern "C" __global__ void gather_rows_f32(int count, int cols, int table_rows, const float* table, const int* indices, float* out)
{
    if (count < 0 || cols <= 0 || table_rows < 0 || !gp_indices_in_range(indices, count, table_rows))
    {
        return;
    }
    for (gp_cells cell(count, cols); cell.more(); cell.next())
    {
        out[cell.index] = table[(u64)indices[cell.row] * cols + cell.col];
    }
}

// dtable[indices[i],:] += dout[i,:], with gather_rows_f32's argument rules. Repeated indices must add up
// deterministically, so there are no atomics: one thread owns each column and adds the rows in index order,
// the very order (and so the very bits) of the cpu backend.
extern "C" __global__ void scatter_add_rows_f32(int count, int cols, int table_rows, const float* dout, const int* indices, float* dtable)
{
    if (count < 0 || cols <= 0 || table_rows < 0 || !gp_indices_in_range(indices, count, table_rows))
    {
        return;
    }
    GP_GRID_STRIDE(c, cols)
    {
        for (u64 i = 0; i < (u64)count; ++i)
        {
            float* at = dtable + (u64)indices[i] * cols + c;
            *at = *at + dout[i * cols + c];
        }
    }
}
