using System.Buffers.Binary;
using System.Text;
using GpuPool.Modules.Elf;
using GpuPool.Modules.Fatbin;
using GpuPool.Modules.Ptx;
using static GpuPool.Modules.Internal.Bounds;

namespace GpuPool.Modules;

/// <summary>What a module image is: PTX text, a fat binary container, or a cubin.</summary>
public enum ModuleFormat
{
    Ptx,
    Cubin,
    FatBinary,
}

/// <summary>
/// A module image as cuModuleLoadData receives it, read without a driver: which code it carries (PTX for a backend
/// that compiles it, SASS for one that runs it), the kernels' parameter layouts and the module-scope variables.
/// </summary>
public sealed class ModuleImage
{
    private static readonly Dictionary<string, ModuleVariable> NoVariables = [];

    private readonly int _cubinArch;

    private ModuleImage(ModuleFormat format, IReadOnlyList<FatBinaryEntry> entries, string? ptx, ReadOnlyMemory<byte>? cubin, int cubinArch,
        IReadOnlyDictionary<string, KernelSignature> kernels, IReadOnlyDictionary<string, ModuleVariable> variables)
    {
        Format = format;
        Entries = entries;
        Ptx = ptx;
        Cubin = cubin;
        _cubinArch = cubinArch;
        Kernels = kernels;
        Variables = variables;
    }

    public ModuleFormat Format { get; }

    /// <summary>
    /// A fat binary's entries, payloads decompressed; empty for PTX and cubin images. Containers concatenated (an
    /// executable's .nv_fatbin) count as one image here, though the runtime registers each as a module of its own:
    /// to keep them apart, read each container alone (<see cref="FatBinary.SizeFromHeader"/> gives its extent).
    /// </summary>
    public IReadOnlyList<FatBinaryEntry> Entries { get; }

    /// <summary>The PTX a backend without matching SASS compiles: the image itself, or a fat binary's PTX of the highest arch; null when there is none.</summary>
    public string? Ptx { get; }

    /// <summary>The cubin itself, or a fat binary's cubin of the highest arch; null when there is none.</summary>
    public ReadOnlyMemory<byte>? Cubin { get; }

    /// <summary>
    /// The kernels by (mangled) name: from <see cref="Cubin"/> when there is one, where the layout is what the SASS
    /// reads (PTX of the same layout lends its parameter names and declared alignments), otherwise from <see cref="Ptx"/>.
    /// </summary>
    public IReadOnlyDictionary<string, KernelSignature> Kernels { get; }

    /// <summary>The module-scope variables by name: from <see cref="Cubin"/> when there is one, otherwise from <see cref="Ptx"/>.</summary>
    public IReadOnlyDictionary<string, ModuleVariable> Variables { get; }

    /// <summary>
    /// The cubin a device of <paramref name="smArch"/> (major * 10 + minor) can run: SASS runs on its own major
    /// architecture at the same or a later minor, so the highest such; null when there is none.
    /// </summary>
    public ReadOnlyMemory<byte>? CubinFor(int smArch)
    {
        if (Format == ModuleFormat.Cubin)
        {
            return RunsOn(_cubinArch, smArch) ? Cubin : null;
        }

        return Best(Entries, FatBinaryEntryKind.Elf, arch => RunsOn(arch, smArch))?.Payload;
    }

    /// <summary>The PTX a device of <paramref name="smArch"/> can compile: the highest arch not above the device's; null when there is none.</summary>
    public string? PtxFor(int smArch)
    {
        if (Format == ModuleFormat.Ptx)
        {
            return Ptx;
        }

        return Best(Entries, FatBinaryEntryKind.Ptx, arch => arch <= smArch) is { } entry ? PtxText(entry.Payload.Span) : null;
    }

    /// <summary>Reads an image; throws <see cref="ModuleImageException"/> naming what is wrong and where.</summary>
    public static ModuleImage Read(ReadOnlySpan<byte> image)
    {
        if (ElfFile.HasMagic(image))
        {
            var cubin = Elf.Cubin.Read(image);
            return new ModuleImage(ModuleFormat.Cubin, [], null, image.ToArray(), cubin.SmArch, cubin.Kernels, cubin.Variables);
        }

        if (image.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(image) is FatBinary.Magic or FatBinary.WrapperMagic)
        {
            return ReadFatBinary(image);
        }

        if (PtxModule.Classify(image) == ImageKind.Ptx)
        {
            var ptx = PtxText(image);
            return new ModuleImage(ModuleFormat.Ptx, [], ptx, null, 0, ParsePtx(ptx, "the PTX image").Entries, PtxVariablesOf(ptx));
        }

        var head = Convert.ToHexString(image[..Math.Min(image.Length, 4)]);
        throw ModuleImageException.Invalid(image.IsEmpty
            ? "the module image is empty"
            : $"the module image is neither PTX text, a fat binary nor a cubin (it starts with {head})");
    }

    private static ModuleImage ReadFatBinary(ReadOnlySpan<byte> image)
    {
        var entries = FatBinary.Read(image);
        var ptxEntry = Best(entries, FatBinaryEntryKind.Ptx, _ => true);
        var elfEntry = Best(entries, FatBinaryEntryKind.Elf, _ => true);
        string? ptx = null;
        IReadOnlyDictionary<string, KernelSignature>? ptxKernels = null;
        if (ptxEntry is not null)
        {
            ptx = PtxText(ptxEntry.Payload.Span);
            ptxKernels = ParsePtx(ptx, $"the PTX entry at offset {Hex(ptxEntry.Offset)} (compute_{ptxEntry.SmArch})").Entries;
        }

        if (elfEntry is null)
        {
            return new ModuleImage(ModuleFormat.FatBinary, entries, ptx, null, 0, ptxKernels ?? new Dictionary<string, KernelSignature>(), ptx is null ? NoVariables : PtxVariablesOf(ptx));
        }

        Cubin cubin;
        try
        {
            cubin = Elf.Cubin.Read(elfEntry.Payload.Span);
        }
        catch (ModuleImageException e)
        {
            throw new ModuleImageException(e.Error, $"the ELF entry at offset {Hex(elfEntry.Offset)} (sm_{elfEntry.SmArch}): {e.Message}", e);
        }

        return new ModuleImage(ModuleFormat.FatBinary, entries, ptx, elfEntry.Payload, elfEntry.SmArch, WithPtxNames(cubin.Kernels, ptxKernels), cubin.Variables);
    }

    private static Dictionary<string, ModuleVariable> PtxVariablesOf(string ptx)
        => PtxVariables.Parse(ptx).ToDictionary(v => v.Name, StringComparer.Ordinal);

    /// <summary>The cubin's layouts, each replaced by the PTX's where the two agree, for its names and declared alignments.</summary>
    private static Dictionary<string, KernelSignature> WithPtxNames(IReadOnlyDictionary<string, KernelSignature> cubin, IReadOnlyDictionary<string, KernelSignature>? ptx)
    {
        var kernels = new Dictionary<string, KernelSignature>(StringComparer.Ordinal);
        foreach (var (name, layout) in cubin)
        {
            kernels[name] = ptx is not null && ptx.TryGetValue(name, out var declared) && declared.HasSameLayout(layout) ? declared : layout;
        }

        return kernels;
    }

    /// <summary>The entry of <paramref name="kind"/> with the highest arch that <paramref name="accept"/> takes; the first of equals.</summary>
    private static FatBinaryEntry? Best(IReadOnlyList<FatBinaryEntry> entries, FatBinaryEntryKind kind, Func<int, bool> accept)
    {
        FatBinaryEntry? best = null;
        foreach (var entry in entries)
        {
            if (entry.Kind == kind && accept(entry.SmArch) && (best is null || entry.SmArch > best.SmArch))
            {
                best = entry;
            }
        }

        return best;
    }

    private static bool RunsOn(int cubinArch, int deviceArch) => cubinArch / 10 == deviceArch / 10 && cubinArch <= deviceArch;

    /// <summary>PTX text up to its NUL terminator (a fat binary pads its PTX with NULs).</summary>
    private static string PtxText(ReadOnlySpan<byte> bytes)
    {
        var end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    private static PtxModule ParsePtx(string text, string where)
    {
        try
        {
            return PtxModule.Parse(text);
        }
        catch (PtxFormatException e)
        {
            throw new ModuleImageException(e.NotPtx ? ModuleImageError.InvalidImage : ModuleImageError.InvalidPtx, $"{where} is not PTX that can be read: {e.Message}", e);
        }
    }
}
