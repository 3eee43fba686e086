using GpuPool.Client;
using GpuPool.Client.Tensors;

namespace GpuPool.Cli.Demo;

/// <summary>
/// A multi-layer perceptron trained entirely on a device (a leased one through a session, or any
/// <see cref="IDeviceOps"/>): every matmul, activation, loss, gradient and Adam step is a kernel launch;
/// the host only shuffles the data, uploads it, and reads back one loss and one accuracy count per epoch.
/// </summary>
internal sealed class MlpClassifier : IAsyncDisposable
{
    private readonly IDeviceOps _device;
    private readonly TensorOps _ops;
    private readonly int _maxBatch;
    private readonly List<DeviceTensor> _owned = [];
    private readonly Layer[] _layers;
    private DeviceTensor _probs = null!;
    private DeviceTensor _dLogits = null!;
    private DeviceTensor _lossRows = null!;
    private DeviceTensor _lossSum = null!;
    private DeviceTensor _predictions = null!;
    private EpochBuffers? _epoch;
    private int _step;

    private sealed class Layer
    {
        public required DeviceTensor W, B, DW, DB, MW, VW, MB, VB, Z, H, DH;
    }

    /// <summary>An epoch's data and tallies on the device, kept from one epoch to the next while the data's size stays.</summary>
    private sealed record EpochBuffers(int Count, int Batches, DeviceTensor X, DeviceTensor Y, DeviceTensor Correct, DeviceTensor Loss) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await X.DisposeAsync().ConfigureAwait(false);
            await Y.DisposeAsync().ConfigureAwait(false);
            await Correct.DisposeAsync().ConfigureAwait(false);
            await Loss.DisposeAsync().ConfigureAwait(false);
        }
    }

    private MlpClassifier(IDeviceOps device, TensorOps ops, int[] sizes, int maxBatch)
    {
        _device = device;
        _ops = ops;
        _maxBatch = maxBatch;
        _layers = new Layer[sizes.Length - 1];
    }

    public static async Task<MlpClassifier> CreateAsync(IDeviceOps device, int[] sizes, int maxBatch, int seed, CancellationToken cancellationToken)
    {
        var ops = await TensorOps.CreateAsync(device, cancellationToken).ConfigureAwait(false);
        var model = new MlpClassifier(device, ops, sizes, maxBatch);
        var random = new Random(seed);
        for (var i = 0; i < sizes.Length - 1; i++)
        {
            int fanIn = sizes[i], fanOut = sizes[i + 1];
            var layer = new Layer
            {
                W = await model.AllocAsync(fanIn, fanOut, cancellationToken).ConfigureAwait(false),
                B = await model.AllocAsync(1, fanOut, cancellationToken).ConfigureAwait(false),
                DW = await model.AllocAsync(fanIn, fanOut, cancellationToken).ConfigureAwait(false),
                DB = await model.AllocAsync(1, fanOut, cancellationToken).ConfigureAwait(false),
                MW = await model.AllocAsync(fanIn, fanOut, cancellationToken).ConfigureAwait(false),
                VW = await model.AllocAsync(fanIn, fanOut, cancellationToken).ConfigureAwait(false),
                MB = await model.AllocAsync(1, fanOut, cancellationToken).ConfigureAwait(false),
                VB = await model.AllocAsync(1, fanOut, cancellationToken).ConfigureAwait(false),
                Z = await model.AllocAsync(maxBatch, fanOut, cancellationToken).ConfigureAwait(false),
                H = await model.AllocAsync(maxBatch, fanOut, cancellationToken).ConfigureAwait(false),
                DH = await model.AllocAsync(maxBatch, fanOut, cancellationToken).ConfigureAwait(false),
            };

            // He initialisation, drawn on the host from a seeded generator so runs repeat.
            var scale = MathF.Sqrt(2f / fanIn);
            var w = new float[fanIn * fanOut];
            for (var j = 0; j < w.Length; j++)
            {
                w[j] = (float)((random.NextDouble() * 2) - 1) * scale * 1.7f;
            }

            await layer.W.UploadAsync(w, cancellationToken).ConfigureAwait(false);
            foreach (var t in new[] { layer.B, layer.MW, layer.VW, layer.MB, layer.VB })
            {
                await ops.FillAsync(t, 0).ConfigureAwait(false);
            }

            model._layers[i] = layer;
        }

        model._probs = await model.AllocAsync(maxBatch, sizes[^1], cancellationToken).ConfigureAwait(false);
        model._dLogits = await model.AllocAsync(maxBatch, sizes[^1], cancellationToken).ConfigureAwait(false);
        model._lossRows = await model.AllocAsync(maxBatch, 1, cancellationToken).ConfigureAwait(false);
        model._lossSum = await model.AllocAsync(1, 1, cancellationToken).ConfigureAwait(false);
        model._predictions = await model.AllocAsync(maxBatch, 1, cancellationToken, ElementType.Int32).ConfigureAwait(false);
        return model;
    }

    /// <summary>One epoch over <paramref name="data"/> in batches; returns the mean loss and the accuracy seen while training.</summary>
    public async Task<(double Loss, double Accuracy)> TrainEpochAsync(SpiralData data, float learningRate, CancellationToken cancellationToken)
    {
        var batches = (data.Count + _maxBatch - 1) / _maxBatch;
        var (_, _, x, y, correct, epochLoss) = await EpochBuffersAsync(data.Count, batches, cancellationToken).ConfigureAwait(false);
        await x.UploadAsync(data.Features, cancellationToken).ConfigureAwait(false);
        await y.UploadAsync(data.Labels, cancellationToken).ConfigureAwait(false);
        await _ops.FillAsync(epochLoss, 0).ConfigureAwait(false);

        for (var b = 0; b < batches; b++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var start = b * _maxBatch;
            var rows = Math.Min(_maxBatch, data.Count - start);
            await TrainStepAsync(x.Rows(start, rows), y.Rows(start, rows), epochLoss, correct.Rows(b, 1), learningRate).ConfigureAwait(false);
        }

        // The only round trips of the epoch: a sticky error of any launch above surfaces here.
        var totalLoss = (await epochLoss.DownloadAsync(cancellationToken).ConfigureAwait(false))[0];
        var counts = await correct.DownloadInt32Async(cancellationToken).ConfigureAwait(false);
        return (totalLoss / data.Count, counts.Sum() / (double)data.Count);
    }

    /// <summary>
    /// One training step on a batch already on the device (<paramref name="xb"/>, its int32 labels <paramref name="yb"/>):
    /// forward, softmax cross-entropy, backward and an Adam update of every parameter, all queued fire-and-forget. The
    /// batch's summed loss is added to <paramref name="lossTotal"/> (one value), and its count of correct predictions is
    /// written to <paramref name="correct"/> (one int32): the caller reads them when it next waits for the device.
    /// </summary>
    public async Task TrainStepAsync(DeviceTensor xb, DeviceTensor yb, DeviceTensor lossTotal, DeviceTensor correct, float learningRate)
    {
        ArgumentNullException.ThrowIfNull(xb);
        var rows = xb.RowCount;
        if (rows > _maxBatch)
        {
            throw new ArgumentOutOfRangeException(nameof(xb), $"a batch of {rows} rows is larger than the model's largest batch, {_maxBatch}");
        }

        var logits = await ForwardAsync(xb, rows).ConfigureAwait(false);
        var probs = Head(_probs, rows);
        var predictions = Head(_predictions, rows);
        var loss = Head(_lossRows, rows);
        await _ops.SoftmaxCrossEntropyAsync(logits, yb, probs, loss).ConfigureAwait(false);
        await _ops.SumAsync(loss, _lossSum).ConfigureAwait(false);
        await _ops.AxpyAsync(1f, _lossSum, lossTotal).ConfigureAwait(false);
        await _ops.ArgmaxRowsAsync(probs, predictions).ConfigureAwait(false);
        await _ops.CountEqualAsync(predictions, yb, correct).ConfigureAwait(false);
        await BackwardAsync(xb, yb, rows).ConfigureAwait(false);
        _step++;
        foreach (var layer in _layers)
        {
            await _ops.AdamAsync(layer.W, layer.DW, layer.MW, layer.VW, _step, learningRate).ConfigureAwait(false);
            await _ops.AdamAsync(layer.B, layer.DB, layer.MB, layer.VB, _step, learningRate).ConfigureAwait(false);
        }
    }

    /// <summary>Batch inference: the predicted class of every sample, computed on the device.</summary>
    public async Task<int[]> PredictAsync(SpiralData data, CancellationToken cancellationToken)
    {
        await using var x = await AllocAsync(data.Count, SpiralData.FeatureCount, cancellationToken, own: false).ConfigureAwait(false);
        await using var predictions = await AllocAsync(data.Count, 1, cancellationToken, ElementType.Int32, own: false).ConfigureAwait(false);
        await x.UploadAsync(data.Features, cancellationToken).ConfigureAwait(false);
        for (var start = 0; start < data.Count; start += _maxBatch)
        {
            var rows = Math.Min(_maxBatch, data.Count - start);
            var logits = await ForwardAsync(x.Rows(start, rows), rows).ConfigureAwait(false);
            await _ops.ArgmaxRowsAsync(logits, predictions.Rows(start, rows)).ConfigureAwait(false);
        }

        return await predictions.DownloadInt32Async(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<DeviceTensor> ForwardAsync(DeviceTensor input, int rows)
    {
        var h = input;
        for (var i = 0; i < _layers.Length; i++)
        {
            var layer = _layers[i];
            var z = Head(layer.Z, rows);
            await _ops.MatMulAsync(h, false, layer.W, false, z).ConfigureAwait(false);
            await _ops.BiasAddAsync(z, layer.B, z).ConfigureAwait(false);
            if (i == _layers.Length - 1)
            {
                return z;
            }

            var a = Head(layer.H, rows);
            await _ops.ReluAsync(z, a).ConfigureAwait(false);
            h = a;
        }

        throw new InvalidOperationException("a model needs at least one layer");
    }

    private async ValueTask BackwardAsync(DeviceTensor input, DeviceTensor labels, int rows)
    {
        // dLogits = (softmax - onehot) / rows: the gradient of the mean cross-entropy.
        var delta = Head(_dLogits, rows);
        await _ops.SoftmaxCrossEntropyBackwardAsync(Head(_probs, rows), labels, 1f / rows, delta).ConfigureAwait(false);
        for (var i = _layers.Length - 1; i >= 0; i--)
        {
            var layer = _layers[i];
            var below = i == 0 ? input : Head(_layers[i - 1].H, rows);
            await _ops.MatMulAsync(below, true, delta, false, layer.DW).ConfigureAwait(false);
            await _ops.SumColumnsAsync(delta, layer.DB).ConfigureAwait(false);
            if (i == 0)
            {
                break;
            }

            var prev = _layers[i - 1];
            var dh = Head(prev.DH, rows);
            await _ops.MatMulAsync(delta, false, layer.W, true, dh).ConfigureAwait(false);
            await _ops.ReluBackwardAsync(Head(prev.Z, rows), dh, dh).ConfigureAwait(false);
            delta = dh;
        }
    }

    private async Task<DeviceTensor> AllocAsync(int rows, int cols, CancellationToken cancellationToken, ElementType type = ElementType.Float32, bool own = true)
    {
        var t = await DeviceTensor.AllocAsync(_device, rows, cols, type, cancellationToken).ConfigureAwait(false);
        if (own)
        {
            _owned.Add(t);
        }

        return t;
    }

    /// <summary>The first <paramref name="rows"/> rows of a batch-sized buffer: the buffer itself when the batch is full, so a step makes no views then.</summary>
    private static DeviceTensor Head(DeviceTensor tensor, int rows) => rows == tensor.RowCount ? tensor : tensor.Rows(0, rows);

    /// <summary>The epoch's buffers for <paramref name="count"/> samples: those of the last epoch when it had as many, else new ones.</summary>
    private async Task<EpochBuffers> EpochBuffersAsync(int count, int batches, CancellationToken cancellationToken)
    {
        if (_epoch is { } kept && kept.Count == count && kept.Batches == batches)
        {
            return kept;
        }

        if (_epoch is not null)
        {
            await _epoch.DisposeAsync().ConfigureAwait(false);
            _epoch = null;
        }

        _epoch = new EpochBuffers(
            count,
            batches,
            await AllocAsync(count, SpiralData.FeatureCount, cancellationToken, own: false).ConfigureAwait(false),
            await AllocAsync(count, 1, cancellationToken, ElementType.Int32, own: false).ConfigureAwait(false),
            await AllocAsync(batches, 1, cancellationToken, ElementType.Int32, own: false).ConfigureAwait(false),
            await AllocAsync(1, 1, cancellationToken, own: false).ConfigureAwait(false));
        return _epoch;
    }

    public async ValueTask DisposeAsync()
    {
        if (_epoch is not null)
        {
            await _epoch.DisposeAsync().ConfigureAwait(false);
            _epoch = null;
        }

        foreach (var t in _owned)
        {
            await t.DisposeAsync().ConfigureAwait(false);
        }

        _owned.Clear();
    }
}
