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
    /// An image the backend is about to load, read once: its variables, and the image as read, or why it cannot be.
    /// Lenient about the variables: an image this reader cannot read is the backend's to judge (the cuda backend's
    /// driver may take PTX whose entries the reader does not follow), so it has the variables its PTX declares, or none.
    /// </summary>
    public static ModuleRead Read(ReadOnlySpan<byte> image)
    {
        try
        {
            var read = ModuleImage.Read(image);
            return new ModuleRead(read, null, [.. read.Variables.Values]);
        }
        catch (Exception ex) when (ex is ModuleImageException or PtxFormatException)
        {
            return new ModuleRead(null, Judge(ex), VariablesOfUnreadable(image));
        }
    }

    private static List<ModuleVariable> VariablesOfUnreadable(ReadOnlySpan<byte> image)
    {
        var trimmed = image.TrimEnd((byte)0);
        if (PtxModule.Classify(trimmed) != ImageKind.Ptx)
        {
            return [];
        }

        try
        {
            return [.. PtxVariables.Parse(Encoding.UTF8.GetString(trimmed))];
        }
        catch (PtxFormatException variable)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, $"the module cannot be loaded: {variable.Message}", variable);
        }
    }

    /// <summary>A reader's error as the device layer judges it: malformed is InvalidArgument, what cannot be had NotSupported.</summary>
    private static DeviceException Judge(Exception ex) => ex switch
    {
        ModuleImageException m => new DeviceException(m.Error == ModuleImageError.NotSupported ? DeviceErrorCode.NotSupported : DeviceErrorCode.InvalidArgument, $"the module image cannot be read: {m.Message}", m),
        PtxFormatException { NotPtx: true } p => new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX (text with .version and .target directives) nor a cubin or fat binary", p),
        _ => new DeviceException(DeviceErrorCode.NotSupported, $"the module cannot be loaded: {ex.Message}", ex),
    };

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

/// <summary>An image read once for its load: as read (null when it cannot be), why not, and its variables.</summary>
internal sealed record ModuleRead(ModuleImage? Image, DeviceException? Error, IReadOnlyList<ModuleVariable> Variables)
{
    /// <summary>The image as read, for a backend that must read it to run it; else the reader's error.</summary>
    public ModuleImage Strict => Image ?? throw Error!;
}
