using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>The built-in library's own image, for tests beside <see cref="GpuPool.Testing.Ptx.OwnPtx"/>'s modules of a program's own.</summary>
internal static class OwnKernels
{
    /// <summary>The built-in library's PTX image, NUL-terminated as drivers take PTX: the one image that runs as C#.</summary>
    public static byte[] BuiltinImage => [.. BuiltinModule.Image.Span, 0];
}
