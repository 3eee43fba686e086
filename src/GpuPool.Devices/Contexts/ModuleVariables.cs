using System.Text;
using GpuPool.Modules;
using GpuPool.Modules.Ptx;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// The one place a module load learns the image's module-scope variables, which every backend then places: from the
/// image as GpuPool.Modules reads it (a cubin's symbol table, a fat binary's cubin, else the PTX's declarations).
/// </summary>
internal static class ModuleVariables
{
    /// <summary>
    /// The variables of an image the backend is about to load. Lenient: an image this reader cannot read is the
    /// backend's to judge (the cuda backend's driver may take PTX whose entries the reader does not follow), so it
    /// has the variables its PTX declares, or none.
    /// </summary>
    public static IReadOnlyList<ModuleVariable> Of(ReadOnlySpan<byte> image)
    {
        try
        {
            return [.. ModuleImage.Read(image).Variables.Values];
        }
        catch (Exception ex) when (ex is ModuleImageException or PtxFormatException)
        {
            var trimmed = image.TrimEnd((byte)0);
            if (PtxModule.Classify(trimmed) != ImageKind.Ptx)
            {
                return [];
            }

            try
            {
                return PtxVariables.Parse(Encoding.UTF8.GetString(trimmed));
            }
            catch (PtxFormatException variable)
            {
                throw new DeviceException(DeviceErrorCode.NotSupported, $"the module cannot be loaded: {variable.Message}", variable);
            }
        }
    }

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
