using System.Text;

namespace GpuPool.Devices.Cpu.Kernels;

/// <summary>
/// The built-in kernel library as PTX (native/kernels/ptx/gpupool_kernels.ptx, embedded in this assembly): what the
/// cuda backend hands the driver to JIT, and the one module image whose kernels the cpu backend runs as the C# bodies of
/// <see cref="BuiltinKernels"/> (its entries and parameter lists are theirs). Any other image is the program's own code,
/// whatever its kernels are named.
/// </summary>
internal static class BuiltinModule
{
    public const string ResourceName = "GpuPool.Devices.gpupool_kernels.ptx";

    private static readonly Lazy<byte[]> Bytes = new(Load);

    private static readonly Lazy<string> TextValue = new(() => Encoding.UTF8.GetString(Bytes.Value));

    /// <summary>The PTX text, without a terminating NUL.</summary>
    public static ReadOnlyMemory<byte> Image => Bytes.Value;

    /// <summary>The PTX text as a string, as a module reader gives a PTX image or a fat binary's PTX entry.</summary>
    public static string Text => TextValue.Value;

    /// <summary>Whether a module image a client sent is this library byte for byte (a terminating NUL aside), as the shim's samples load it.</summary>
    public static bool IsBuiltinImage(ReadOnlySpan<byte> image) => image.TrimEnd((byte)0).SequenceEqual(Bytes.Value);

    /// <summary>Whether a module's PTX text is this library's, character for character.</summary>
    public static bool IsBuiltinPtx(string? ptx) => string.Equals(ptx, Text, StringComparison.Ordinal);

    private static byte[] Load()
    {
        using var stream = typeof(BuiltinModule).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"GpuPool.Devices was built without its {ResourceName} resource");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
