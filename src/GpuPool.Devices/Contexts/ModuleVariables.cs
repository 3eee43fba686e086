using System.Text;
using GpuPool.Modules;
using GpuPool.Modules.Ptx;

namespace GpuPool.Devices.Contexts;

/// <summary>
/// The one place a module load learns the image's module-scope variables, which every backend then places: PTX's from
/// its text (<see cref="PtxVariables"/>); a cubin's or fat binary's none yet (their symbol tables are read elsewhere in
/// GpuPool.Modules and come here with its module image reader).
/// </summary>
internal static class ModuleVariables
{
    public static IReadOnlyList<ModuleVariable> Of(ReadOnlySpan<byte> image)
    {
        // Drivers take PTX as a NUL-terminated string; clients often send the NUL.
        var trimmed = image.TrimEnd((byte)0);
        if (PtxModule.Classify(trimmed) != ImageKind.Ptx)
        {
            return [];
        }

        try
        {
            return PtxVariables.Parse(Encoding.UTF8.GetString(trimmed));
        }
        catch (PtxFormatException ex)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, $"the module cannot be loaded: {ex.Message}", ex);
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
