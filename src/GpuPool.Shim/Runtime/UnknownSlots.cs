using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Runtime;

/// <summary>
/// Stubs for the slots of a served table that nobody has described. An empty slot would be a call through null (a
/// crash with no word of why); each stub instead logs once which table and slot the program called and answers
/// CUDA_ERROR_NOT_SUPPORTED, so the program stops, if it does, on a line that names the slot.
/// </summary>
/// <remarks>
/// A stub must know its own slot, so each is a few bytes of x86-64 code in a page of their own: it loads its number
/// into the first argument register and jumps to <see cref="Called"/>, which returns straight to the program. The
/// shim is built for linux-x64 only; elsewhere the slots stay empty.
/// </remarks>
internal static unsafe class UnknownSlots
{
    private const int StubBytes = 32;
    private const int ProtRead = 1, ProtWrite = 2, ProtExec = 4, MapPrivate = 2, MapAnonymous = 0x20;

    private static readonly List<(string Table, string Uuid, int Slot)> Assigned = [];

    /// <summary>Fills every empty slot of each table from index 1 on (slot 0 holds the size) with a stub of its own.</summary>
    public static void Fill(IEnumerable<(TableLayout Layout, nint Slots)> tables)
    {
        var empty = new List<(nint Address, string Table, string Uuid, int Slot)>();
        foreach (var (layout, slots) in tables.Where(t => t.Layout.SizeInSlotZero))
        {
            for (var i = 1; i < layout.Slots; i++)
            {
                if (((nint*)slots)[i] == 0)
                {
                    empty.Add((slots + (i * sizeof(nint)), layout.Name, layout.Uuid, i));
                }
            }
        }

        if (empty.Count == 0 || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            return;
        }

        var code = Page(empty.Count * StubBytes);
        if (code is null)
        {
            return;
        }

        var handler = (nint)(delegate* unmanaged<int, CuResult>)&Called;
        for (var i = 0; i < empty.Count; i++)
        {
            var stub = code + (i * StubBytes);
            var id = Assigned.Count;
            Assigned.Add((empty[i].Table, empty[i].Uuid, empty[i].Slot));
            stub[0] = 0xBF;                         // mov edi, id
            *(int*)(stub + 1) = id;
            stub[5] = 0x48;                         // mov rax, handler
            stub[6] = 0xB8;
            *(long*)(stub + 7) = handler;
            stub[15] = 0xFF;                        // jmp rax
            stub[16] = 0xE0;
            *(nint*)empty[i].Address = (nint)stub;
        }

        var mprotect = (delegate* unmanaged<void*, nuint, int, int>)Libc.Function("mprotect");
        if (mprotect(code, (nuint)(empty.Count * StubBytes), ProtRead | ProtExec) != 0)
        {
            // Not executable: better an empty slot than one that faults on a page the program cannot run.
            foreach (var slot in empty)
            {
                *(nint*)slot.Address = 0;
            }
        }
    }

    /// <summary>What the stub with number <paramref name="id"/> was given to: the table's name, UUID and slot.</summary>
    internal static (string Table, string Uuid, int Slot) Describe(int id) => Assigned[id];

    private static byte* Page(int bytes)
    {
        var mmap = (delegate* unmanaged<void*, nuint, int, int, int, nint, void*>)Libc.Function("mmap");
        if (mmap is null || Libc.Function("mprotect") == 0)
        {
            return null;
        }

        var page = mmap(null, (nuint)bytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        return page == (void*)-1 ? null : (byte*)page;
    }

    [UnmanagedCallersOnly]
    private static CuResult Called(int id)
    {
        try
        {
            var (table, uuid, slot) = Describe(id);
            ShimLog.OnceAlways($"slot:{uuid}:{slot}", $"the program calls slot {slot} of the private table {table} {uuid}, which nobody has described; it gets CUDA_ERROR_NOT_SUPPORTED and may stop here");
        }
        catch
        {
            // A log that fails must not take the program with it: the answer is the same.
        }

        return CuResult.NotSupported;
    }
}
