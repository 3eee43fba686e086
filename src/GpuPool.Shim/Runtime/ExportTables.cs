using System.Collections.Frozen;
using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Runtime;

/// <summary>
/// cuGetExportTable: the private tables of functions the CUDA runtime (cudart, linked into every nvcc-built program)
/// asks the driver for by UUID before it makes any public call. NVIDIA documents none of them; what each slot does
/// was learned from public reverse-engineering work (ZLUDA's dark API module) and from watching cudart 11.8 use
/// them, and is written here as functions of this shim. A table is an array of function pointers, some tables with
/// their own size in bytes in slot 0; a slot nobody has described holds a stub that names it in the log and answers
/// CUDA_ERROR_NOT_SUPPORTED (UnknownSlots), where those projects leave it null.
/// Tables are keyed by UUID alone: a UUID names one layout, so the tables of newer runtimes (12.x, 13.x) go beside
/// these under their own UUIDs. A UUID nobody has described is refused with CUDA_ERROR_INVALID_VALUE (what the
/// driver answers for a table it does not have) and logged once with the UUID.
/// </summary>
internal static unsafe class ExportTables
{
    private static readonly Lazy<FrozenDictionary<string, Table>> All = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>A built table: its name for the log, and the native array cudart reads.</summary>
    internal sealed record Table(string Name, nint Address, int Slots);

    internal static IReadOnlyDictionary<string, Table> Tables => All.Value;

    public static CuResult Get(void** table, byte* uuid)
    {
        if (table is null || uuid is null)
        {
            return CuResult.InvalidValue;
        }

        *table = null;
        var key = Key(new ReadOnlySpan<byte>(uuid, 16));
        if (!All.Value.TryGetValue(key, out var found))
        {
            ShimLog.OnceAlways("export:" + key, $"cuGetExportTable: no private table {key} (a CUDA runtime newer than the shim knows, or a tool's table); the program may stop here");
            return CuResult.InvalidValue;
        }

        ShimLog.Once("export-served:" + key, $"cuGetExportTable: serving {found.Name} ({key})");
        *table = (void*)found.Address;
        return CuResult.Success;
    }

    /// <summary>The UUID as its bytes in memory order, hex, braced: the form ZLUDA and the tracing tools print.</summary>
    internal static string Key(ReadOnlySpan<byte> uuid)
    {
        var hex = Convert.ToHexString(uuid);
        return $"{{{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..]}}}";
    }

    private static FrozenDictionary<string, Table> Build()
    {
        var tables = new Dictionary<string, Table>(StringComparer.Ordinal);
        var built = new List<(TableLayout, nint)>();
        foreach (var layout in RuntimeTables.Layouts())
        {
            var slots = (nint*)NativeMemory.AllocZeroed((nuint)(layout.Slots * sizeof(nint)));
            if (layout.SizeInSlotZero)
            {
                slots[0] = layout.Slots * sizeof(nint);
            }

            foreach (var (index, function) in layout.Functions)
            {
                slots[index] = function;
            }

            // Never freed: cudart keeps the pointer for the life of the process.
            tables[layout.Uuid] = new Table(layout.Name, (nint)slots, layout.Slots);
            built.Add((layout, (nint)slots));
        }

        UnknownSlots.Fill(built);

        return tables.ToFrozenDictionary(StringComparer.Ordinal);
    }
}

/// <summary>One private table's layout: its UUID, a name, its length, and the slots this shim fills.</summary>
internal sealed record TableLayout(string Uuid, string Name, int Slots, bool SizeInSlotZero, IReadOnlyList<(int Index, nint Function)> Functions);
