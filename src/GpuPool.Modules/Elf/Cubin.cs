using GpuPool.Modules.Ptx;

namespace GpuPool.Modules.Elf;

/// <summary>
/// What a loader needs of a cubin (the ELF image of one architecture's SASS): its kernels' parameter layouts, from
/// each kernel's <c>.nv.info.&lt;name&gt;</c>, and its module-scope variables, from the symbol table.
/// </summary>
public sealed class Cubin
{
    private const ushort MachineCuda = 190;
    private const int SymbolObject = 1;
    private const int SymbolFunction = 2;

    // Relocatable cubins (nvcc -rdc) type their variables STT_CUDA_OBJECT rather than STT_OBJECT.
    private const int SymbolCudaObject = 13;

    // st_other bit that marks a kernel; a device function (a FUNC of its own in a relocatable cubin) lacks it.
    private const byte OtherEntry = 0x10;

    // A NOBITS section's size is not backed by the image; beyond this it is a lie.
    private const ulong MaxVariableBytes = 1UL << 40;

    private Cubin(int smArch, Dictionary<string, KernelSignature> kernels, Dictionary<string, ModuleVariable> variables)
    {
        SmArch = smArch;
        Kernels = kernels;
        Variables = variables;
    }

    /// <summary>The architecture the SASS is for, as major * 10 + minor.</summary>
    public int SmArch { get; }

    public IReadOnlyDictionary<string, KernelSignature> Kernels { get; }

    /// <summary><c>__device__</c> and <c>__constant__</c> variables the module defines (not those it only declares).</summary>
    public IReadOnlyDictionary<string, ModuleVariable> Variables { get; }

    /// <summary>Reads a cubin; throws <see cref="ModuleImageException"/> naming the field that is wrong.</summary>
    public static Cubin Read(ReadOnlySpan<byte> image)
    {
        var elf = ElfFile.Read(image);
        if (elf.Machine != MachineCuda)
        {
            throw ModuleImageException.Invalid($"the ELF image is for machine {elf.Machine} (e_machine at offset 0x12), not CUDA ({MachineCuda})");
        }

        var symbols = elf.Symbols();
        return new Cubin(SmArchOf(elf), ReadKernels(elf, symbols), ReadVariables(elf, symbols));
    }

    /// <summary>
    /// ELF ABI version 7 (what nvcc 11.8 writes) keeps the arch in e_flags' low byte, with addressing and texture-mode
    /// flags in the next; version 8 (sm_100 and later, per LLVM's ELF.h) moved it to bits 8..15. Only version 7 has
    /// been checked against real cubins.
    /// </summary>
    private static int SmArchOf(ElfFile elf) => (int)(elf.AbiVersion >= 8 ? (elf.Flags >> 8) & 0xFF : elf.Flags & 0xFF);

    private static Dictionary<string, KernelSignature> ReadKernels(ElfFile elf, ElfSymbol[] symbols)
    {
        var kernels = new Dictionary<string, KernelSignature>(StringComparer.Ordinal);
        var sections = new Dictionary<string, ElfSection>(StringComparer.Ordinal);
        foreach (var section in elf.Sections)
        {
            sections.TryAdd(section.Name, section);
        }

        foreach (var symbol in symbols)
        {
            if (symbol.Type != SymbolFunction || (symbol.Other & OtherEntry) == 0 || symbol.DefinedIn < 0)
            {
                continue;
            }

            var name = symbol.Name;
            var text = elf.Sections[symbol.DefinedIn];
            if (text.Name != ".text." + name)
            {
                throw ModuleImageException.Invalid($"kernel {name} is defined in section {text.Index} ({text.Name}), not in .text.{name}");
            }

            if (!sections.TryGetValue(".nv.info." + name, out var info))
            {
                throw ModuleImageException.Invalid($"kernel {name} has no .nv.info.{name} section, so its parameters are unknown");
            }

            if (!kernels.TryAdd(name, NvInfo.Signature(name, elf.Data(info), (long)info.Offset)))
            {
                throw ModuleImageException.Invalid($"kernel {name} is defined twice in the symbol table");
            }
        }

        return kernels;
    }

    private static Dictionary<string, ModuleVariable> ReadVariables(ElfFile elf, ElfSymbol[] symbols)
    {
        var variables = new Dictionary<string, ModuleVariable>(StringComparer.Ordinal);
        foreach (var symbol in symbols)
        {
            if (symbol.Type is not (SymbolObject or SymbolCudaObject) || symbol.DefinedIn < 0)
            {
                continue;
            }

            var section = elf.Sections[symbol.DefinedIn];
            if (SpaceOf(section.Name) is not { } space)
            {
                continue;
            }

            if (symbol.Value > section.Size || symbol.Size > section.Size - symbol.Value)
            {
                throw ModuleImageException.Invalid($"variable {symbol.Name} ({symbol.Size} bytes at {symbol.Value}, st_value and st_size) runs past the end of its section {section.Name} ({section.Size} bytes)");
            }

            if (symbol.Size > MaxVariableBytes)
            {
                throw ModuleImageException.Invalid($"variable {symbol.Name} says it is {symbol.Size} bytes (st_size), more than any device holds");
            }

            // Zeros are reported as no initializer, as PTX declares a variable that starts zeroed.
            var bytes = elf.Data(section);
            var initializer = bytes.IsEmpty ? [] : bytes.Slice((int)symbol.Value, (int)symbol.Size);
            var value = new ModuleVariable(symbol.Name, (long)symbol.Size, AlignOf(section, symbol), space, initializer.ContainsAnyExcept((byte)0) ? initializer.ToArray() : []);

            // Linked cubins can hold two local variables of one name; the first is the one a lookup by name finds.
            variables.TryAdd(symbol.Name, value);
        }

        return variables;
    }

    /// <summary>Where variables of a section live: .nv.global (zeroed), .nv.global.init, or a user constant bank .nv.constant&lt;N&gt;.</summary>
    private static VariableSpace? SpaceOf(string section)
    {
        if (section is ".nv.global" or ".nv.global.init")
        {
            return VariableSpace.Global;
        }

        // Bank 0 holds launch parameters (.nv.constant0.<kernel>); no variable of the user's is there.
        const string Constant = ".nv.constant";
        if (section.StartsWith(Constant, StringComparison.Ordinal) && section.Length > Constant.Length && section != ".nv.constant0"
            && !section.AsSpan(Constant.Length).ContainsAnyExceptInRange('0', '9'))
        {
            return VariableSpace.Const;
        }

        return null;
    }

    /// <summary>
    /// ELF records no alignment per symbol: this is the largest that the section's alignment, the offset and the size
    /// all allow. It is never less than the declared one, and equal to it for a scalar or vector, whose size is its
    /// alignment.
    /// </summary>
    private static int AlignOf(in ElfSection section, in ElfSymbol symbol)
    {
        var align = 1UL << 30;
        foreach (var bound in (ReadOnlySpan<ulong>)[section.AddrAlign, symbol.Value, symbol.Size])
        {
            // The lowest set bit: the largest power of two the value is a multiple of (0 allows anything).
            if (bound != 0)
            {
                align = Math.Min(align, bound & (~bound + 1));
            }
        }

        return (int)align;
    }
}
