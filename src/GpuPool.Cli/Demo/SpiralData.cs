namespace GpuPool.Cli.Demo;

/// <summary>
/// The demo's data set: interleaved 2-D spirals, one arm per class. No straight line separates the
/// arms, so a model needs its hidden layers to learn them.
/// </summary>
internal sealed record SpiralData(float[] Features, int[] Labels, int Classes)
{
    public const int FeatureCount = 2;

    public int Count => Labels.Length;

    public static SpiralData Generate(int samples, int classes, int seed, float noise = 0.2f)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, classes);
        var random = new Random(seed);
        var features = new float[samples * FeatureCount];
        var labels = new int[samples];
        for (var i = 0; i < samples; i++)
        {
            var c = i % classes;
            var t = (float)random.NextDouble();
            var radius = t;
            var angle = (c * 2 * MathF.PI / classes) + (t * 5f) + (Gaussian(random) * noise);
            features[(i * 2) + 0] = radius * MathF.Sin(angle);
            features[(i * 2) + 1] = radius * MathF.Cos(angle);
            labels[i] = c;
        }

        return new SpiralData(features, labels, classes);
    }

    /// <summary>The samples in a new random order, features and labels kept together.</summary>
    public SpiralData Shuffled(Random random)
    {
        var order = Enumerable.Range(0, Count).ToArray();
        random.Shuffle(order);
        var features = new float[Features.Length];
        var labels = new int[Count];
        for (var i = 0; i < order.Length; i++)
        {
            features[(i * 2) + 0] = Features[(order[i] * 2) + 0];
            features[(i * 2) + 1] = Features[(order[i] * 2) + 1];
            labels[i] = Labels[order[i]];
        }

        return this with { Features = features, Labels = labels };
    }

    private static float Gaussian(Random random)
    {
        var u1 = 1.0 - random.NextDouble();
        var u2 = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
