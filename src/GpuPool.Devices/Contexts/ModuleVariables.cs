using GpuPool.Modules;
using GpuPool.Modules.Ptx;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// The one place a module load learns the image's module-scope variables, which every backend then places: from the
/// image as GpuPool.Modules reads it (a cubin's symbol table, a fat binary's cubin, else the PTX's declarations).
/// </summary>
internal static class ModuleVariables
{
    public static IReadOnlyList<ModuleVariable> Of(ReadOnlySpan<byte> image) => [.. Read(image).Variables.Values];

    /// <summary>An image as the device layer judges it: malformed is InvalidArgument, what cannot be had NotSupported.</summary>
    public static ModuleImage Read(ReadOnlySpan<byte> image)
    {
        try
        {
            return ModuleImage.Read(image);
        }
        catch (ModuleImageException ex)
        {
            throw new DeviceException(ex.Error == ModuleImageError.NotSupported ? DeviceErrorCode.NotSupported : DeviceErrorCode.InvalidArgument, $"the module image cannot be read: {ex.Message}", ex);
        }
        catch (PtxFormatException ex)
        {
            throw ex.NotPtx
                ? new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX (text with .version and .target directives) nor a cubin or fat binary", ex)
                : new DeviceException(DeviceErrorCode.NotSupported, $"the module cannot be loaded: {ex.Message}", ex);
        }
    }

    /// <summary>The bytes the variables take of the lease's memory (at most <see cref="ulong.MaxValue"/>, which no lease has).</summary>
    public static ulong Bytes(IReadOnlyList<ModuleVariable> variables)
    {
        ulong total = 0;
        foreach (var v in variables)
        {
            total += Math.Min((ulong)v.Size, ulong.MaxValue - total);
        }

        return total;
    }
}
