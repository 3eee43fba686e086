using System.Diagnostics;
using GpuPool.Cli.Demo;
using GpuPool.Client;
using GpuPool.Client.Tensors;

namespace GpuPool.Perf.Training;

/// <summary>
/// The demo's model at one batch size on one device (a session over a transport, or a context in this process), with
/// its data already on the device, ready to run training steps.
/// </summary>
internal sealed class StepTarget : IAsyncDisposable
{
    /// <summary>Batches of data on the device that the steps cycle through.</summary>
    public const int DataBatches = 8;

    private static readonly int[] Layers = [SpiralData.FeatureCount, 64, 64, 3];
    private const float LearningRate = 0.01f;

    private readonly MlpClassifier _model;
    private readonly DeviceTensor _x;
    private readonly DeviceTensor _y;
    private readonly DeviceTensor _loss;
    private readonly DeviceTensor _correct;
    private readonly (DeviceTensor X, DeviceTensor Y, DeviceTensor Correct)[] _batches;
    private int _next;

    private StepTarget(string name, IDeviceOps device, MlpClassifier model, DeviceTensor x, DeviceTensor y, DeviceTensor loss, DeviceTensor correct, int batch)
    {
        Name = name;
        Device = device;
        _model = model;
        _x = x;
        _y = y;
        _loss = loss;
        _correct = correct;

        // Views made once: the loop below then does nothing but the model's own step.
        _batches = Enumerable.Range(0, DataBatches).Select(b => (x.Rows(b * batch, batch), y.Rows(b * batch, batch), correct.Rows(b, 1))).ToArray();
    }

    public string Name { get; }

    public IDeviceOps Device { get; }

    /// <summary>Steps run so far (warm-up included).</summary>
    public long Steps { get; private set; }

    /// <summary>Builds the model as the demo does (same layers and seed) and uploads <see cref="DataBatches"/> batches of spirals.</summary>
    public static async Task<StepTarget> CreateAsync(string name, IDeviceOps device, int batch, CancellationToken cancellationToken)
    {
        const int seed = 7;
        var model = await MlpClassifier.CreateAsync(device, Layers, batch, seed, cancellationToken).ConfigureAwait(false);
        var data = SpiralData.Generate(batch * DataBatches, 3, seed);
        var x = await DeviceTensor.AllocAsync(device, data.Count, SpiralData.FeatureCount, cancellationToken: cancellationToken).ConfigureAwait(false);
        var y = await DeviceTensor.AllocAsync(device, data.Count, 1, ElementType.Int32, cancellationToken).ConfigureAwait(false);
        var loss = await DeviceTensor.AllocAsync(device, 1, 1, cancellationToken: cancellationToken).ConfigureAwait(false);
        var correct = await DeviceTensor.AllocAsync(device, DataBatches, 1, ElementType.Int32, cancellationToken).ConfigureAwait(false);
        await x.UploadAsync(data.Features, cancellationToken).ConfigureAwait(false);
        await y.UploadAsync(data.Labels, cancellationToken).ConfigureAwait(false);
        await device.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
        return new StepTarget(name, device, model, x, y, loss, correct, batch);
    }

    /// <summary>
    /// Runs <paramref name="steps"/> training steps and waits for the device to finish them. Submit is how long queuing
    /// them took (the steps are fire-and-forget), Total until the device had run them all, Cpu the process's CPU time
    /// meanwhile and Allocated the bytes allocated (every thread: the caller, the broker if any, the device's kernels).
    /// </summary>
    public async Task<StepTiming> RunAsync(int steps, CancellationToken cancellationToken)
    {
        var cpu = Environment.CpuUsage.TotalTime;
        var allocated = GC.GetTotalAllocatedBytes(precise: false);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < steps; i++)
        {
            var (xb, yb, correct) = _batches[_next];
            _next = (_next + 1) % DataBatches;
            await _model.TrainStepAsync(xb, yb, _loss, correct, LearningRate).ConfigureAwait(false);
        }

        var submit = clock.Elapsed;
        await Device.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
        var total = clock.Elapsed;
        Steps += steps;
        return new StepTiming(steps, submit, total, Environment.CpuUsage.TotalTime - cpu, GC.GetTotalAllocatedBytes(precise: false) - allocated);
    }

    /// <summary>The summed loss of every step so far: equal on two targets that ran the same steps, if both computed the same.</summary>
    public async Task<float> LossTotalAsync(CancellationToken cancellationToken)
        => (await _loss.DownloadAsync(cancellationToken).ConfigureAwait(false))[0];

    public async ValueTask DisposeAsync()
    {
        await _model.DisposeAsync().ConfigureAwait(false);
        await _x.DisposeAsync().ConfigureAwait(false);
        await _y.DisposeAsync().ConfigureAwait(false);
        await _loss.DisposeAsync().ConfigureAwait(false);
        await _correct.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>One timed run of steps.</summary>
internal readonly record struct StepTiming(int Steps, TimeSpan Submit, TimeSpan Total, TimeSpan Cpu, long Allocated)
{
    public double StepsPerSecond => Steps / Total.TotalSeconds;

    public double CpuMicrosecondsPerStep => Cpu.TotalMicroseconds / Steps;

    public double SubmitShare => Submit / Total;

    public double BytesPerStep => (double)Allocated / Steps;
}
