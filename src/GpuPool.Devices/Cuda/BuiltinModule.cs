namespace GpuPool.Devices.Cuda;

/// <summary>
/// The built-in kernel library as PTX (native/kernels/ptx/gpupool_kernels.ptx, embedded in this assembly), which
/// the driver JIT-compiles for the device when a lease loads it. Its entries and parameter lists are the cpu
/// backend's BuiltinKernels, so the same KernelDefs describe their pointer parameters.
/// </summary>
internal static class BuiltinModule
{
    public const string ResourceName = "GpuPool.Devices.Cuda.gpupool_kernels.ptx";

    private static readonly Lazy<byte[]> Bytes = new(Load);

    /// <summary>The PTX text, without a terminating NUL.</summary>
    public static ReadOnlyMemory<byte> Image => Bytes.Value;

    /// <summary>Whether a module image a client sent is this library (as the shim's samples load it), so its launches get the built-in bounds checks.</summary>
    public static bool IsBuiltinImage(ReadOnlySpan<byte> image) => image.TrimEnd((byte)0).SequenceEqual(Bytes.Value);

    private static byte[] Load()
    {
        using var stream = typeof(BuiltinModule).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"GpuPool.Devices was built without its {ResourceName} resource");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
