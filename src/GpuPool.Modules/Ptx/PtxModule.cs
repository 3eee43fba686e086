using System.Text;

namespace GpuPool.Modules.Ptx;

/// <summary>What a module image is, judged by its first bytes.</summary>
public enum ImageKind
{
    Ptx,
    Cubin,
    FatBinary,
    Unknown,
}

/// <summary>One kernel parameter as the PTX declares it: its size and alignment in the launch parameter block.</summary>
public readonly record struct PtxParam(string Name, int Size, int Align);

/// <summary>A kernel's parameter list, laid out the way cuLaunchKernel packs it.</summary>
public sealed class KernelSignature
{
    public KernelSignature(string name, IReadOnlyList<PtxParam> parameters)
    {
        Name = name;
        Params = parameters;
        var offsets = new int[parameters.Count];
        int offset = 0, maxAlign = 1;
        for (var i = 0; i < parameters.Count; i++)
        {
            var align = parameters[i].Align;
            offset = (offset + align - 1) / align * align;
            offsets[i] = offset;
            offset += parameters[i].Size;
            maxAlign = Math.Max(maxAlign, align);
        }

        Offsets = offsets;
        ParamBytes = offset;
        PaddedBytes = (offset + maxAlign - 1) / maxAlign * maxAlign;
    }

    /// <summary>
    /// A layout whose offsets are known rather than derived (a cubin's .nv.info gives them): each parameter starts at
    /// its offset, in order and without overlap, and <paramref name="paramBytes"/> covers them all.
    /// </summary>
    public KernelSignature(string name, IReadOnlyList<PtxParam> parameters, IReadOnlyList<int> offsets, int paramBytes)
    {
        if (offsets.Count != parameters.Count)
        {
            throw new ArgumentException($"kernel {name} has {parameters.Count} parameters but {offsets.Count} offsets", nameof(offsets));
        }

        int end = 0, maxAlign = 1;
        for (var i = 0; i < parameters.Count; i++)
        {
            if (parameters[i].Size < 0 || parameters[i].Align <= 0)
            {
                throw new ArgumentException($"kernel {name}: parameter {i} has size {parameters[i].Size} and alignment {parameters[i].Align}", nameof(parameters));
            }

            if (offsets[i] < end)
            {
                throw new ArgumentException($"kernel {name}: parameter {i} at offset {offsets[i]} overlaps the one before it, which ends at {end}", nameof(offsets));
            }

            end = offsets[i] + parameters[i].Size;
            maxAlign = Math.Max(maxAlign, parameters[i].Align);
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(paramBytes, end);
        Name = name;
        Params = parameters;
        Offsets = [.. offsets];
        ParamBytes = paramBytes;
        PaddedBytes = (paramBytes + maxAlign - 1) / maxAlign * maxAlign;
    }

    public string Name { get; }

    public IReadOnlyList<PtxParam> Params { get; }

    public IReadOnlyList<int> Offsets { get; }

    /// <summary>Bytes from the first parameter to the end of the last one.</summary>
    public int ParamBytes { get; }

    /// <summary><see cref="ParamBytes"/> rounded up to the largest alignment, as a C struct of the parameters would be.</summary>
    public int PaddedBytes { get; }

    /// <summary>Whether <paramref name="other"/> packs the same bytes the same way (names and declared alignments aside).</summary>
    public bool HasSameLayout(KernelSignature other)
        => ParamBytes == other.ParamBytes && Params.Count == other.Params.Count
            && Offsets.SequenceEqual(other.Offsets) && Params.Select(p => p.Size).SequenceEqual(other.Params.Select(p => p.Size));

    public override string ToString() => $"{Name}({string.Join(", ", Params.Select(p => $"{p.Name}:{p.Size}"))})";
}

/// <summary>A parse failure: the image is text but not PTX we can read (<see cref="NotPtx"/>: not PTX at all).</summary>
public sealed class PtxFormatException(string message, bool notPtx = false) : Exception(message)
{
    public bool NotPtx { get; } = notPtx;
}

/// <summary>
/// What the shim needs to know of a PTX module: the parameter lists of its <c>.entry</c> kernels (cuLaunchKernel's
/// kernelParams carry no sizes, so they come from here) and the names of its module-scope variables. The
/// instructions themselves are the device's business.
/// </summary>
public sealed class PtxModule
{
    private PtxModule(Dictionary<string, KernelSignature> entries, HashSet<string> globals, int version)
    {
        Entries = entries;
        Globals = globals;
        Version = version;
    }

    public IReadOnlyDictionary<string, KernelSignature> Entries { get; }

    /// <summary>Module-scope <c>.global</c> and <c>.const</c> variables.</summary>
    public IReadOnlySet<string> Globals { get; }

    /// <summary>The <c>.version</c> directive as major * 10 + minor (for example 70 for 7.0).</summary>
    public int Version { get; }

    public static ImageKind Classify(ReadOnlySpan<byte> image)
    {
        if (image.Length >= 4 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F')
        {
            return ImageKind.Cubin;
        }

        // A fat binary starts with its wrapper's magic 0x466243B1 or its data header's 0xBA55ED50 (little-endian).
        if (image.Length >= 4)
        {
            var magic = BitConverter.ToUInt32(image[..4]);
            if (magic is 0x466243B1 or 0xBA55ED50)
            {
                return ImageKind.FatBinary;
            }
        }

        var text = image.TrimStart(" \t\r\n"u8);
        if (text.Length > 0 && (text[0] == (byte)'.' || text[0] == (byte)'/'))
        {
            // Directives or comments first; the parser decides whether it is really PTX.
            return ImageKind.Ptx;
        }

        return ImageKind.Unknown;
    }

    /// <summary>Parses PTX text; throws <see cref="PtxFormatException"/> naming what is wrong.</summary>
    public static PtxModule Parse(string text)
    {
        var tokens = Tokenize(text);
        var entries = new Dictionary<string, KernelSignature>(StringComparer.Ordinal);
        var globals = new HashSet<string>(StringComparer.Ordinal);
        int braces = 0, version = -1;
        var sawTarget = false;
        for (var i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            switch (t)
            {
                case "{":
                    braces++;
                    continue;
                case "}":
                    braces--;
                    if (braces < 0)
                    {
                        throw new PtxFormatException("unbalanced '}'");
                    }

                    continue;
            }

            if (braces != 0)
            {
                continue;
            }

            switch (t)
            {
                case ".version":
                    version = ParseVersion(tokens, i + 1);
                    break;
                case ".target":
                    sawTarget = true;
                    break;
                case ".entry":
                    var signature = ParseEntry(tokens, ref i);
                    if (!entries.TryAdd(signature.Name, signature) && entries[signature.Name].ParamBytes != signature.ParamBytes)
                    {
                        throw new PtxFormatException($"kernel {signature.Name} is declared twice with different parameters");
                    }

                    break;
                case ".func":
                    SkipParenthesized(tokens, ref i);
                    break;
                case ".global" or ".const":
                    if (VariableName(tokens, i + 1) is { } name)
                    {
                        globals.Add(name);
                    }

                    break;
            }
        }

        if (braces != 0)
        {
            throw new PtxFormatException("a '{' is never closed");
        }

        if (version < 0 || !sawTarget)
        {
            throw new PtxFormatException("the text has no .version and .target directives, so it is not PTX", notPtx: true);
        }

        return new PtxModule(entries, globals, version);
    }

    private static int ParseVersion(List<string> tokens, int at)
    {
        if (at >= tokens.Count)
        {
            throw new PtxFormatException(".version has no number");
        }

        var parts = tokens[at].Split('.');
        if (parts.Length != 2 || !int.TryParse(parts[0], out var major) || !int.TryParse(parts[1], out var minor) || minor > 9)
        {
            throw new PtxFormatException($".version '{tokens[at]}' is not major.minor");
        }

        return (major * 10) + minor;
    }

    /// <summary>Parses <c>.entry name ( .param ..., ... )</c>; <paramref name="i"/> ends on the last token read.</summary>
    private static KernelSignature ParseEntry(List<string> tokens, ref int i)
    {
        if (i + 1 >= tokens.Count || !IsIdentifier(tokens[i + 1]))
        {
            throw new PtxFormatException(".entry is not followed by a kernel name");
        }

        var name = tokens[++i];
        var parameters = new List<PtxParam>();
        if (i + 1 < tokens.Count && tokens[i + 1] == "(")
        {
            i++;
            var current = new List<string>();
            while (true)
            {
                if (++i >= tokens.Count)
                {
                    throw new PtxFormatException($"the parameter list of kernel {name} is never closed");
                }

                var t = tokens[i];
                if (t is "," or ")")
                {
                    if (current.Count > 0)
                    {
                        parameters.Add(ParseParam(name, current));
                        current.Clear();
                    }
                    else if (t == "," || parameters.Count > 0)
                    {
                        throw new PtxFormatException($"kernel {name} has an empty parameter declaration");
                    }

                    if (t == ")")
                    {
                        break;
                    }
                }
                else
                {
                    current.Add(t);
                }
            }
        }

        return new KernelSignature(name, parameters);
    }

    /// <summary>One declaration: <c>.param [.align N] .type [.ptr [.space] [.align N]] name [ '[' count ']' ]</c>.</summary>
    private static PtxParam ParseParam(string kernel, List<string> decl)
    {
        if (decl[0] != ".param")
        {
            throw new PtxFormatException($"kernel {kernel}: a parameter starts with '{decl[0]}', not .param");
        }

        int typeSize = 0, align = 0, count = 1;
        var afterPtr = false;
        string? name = null;
        for (var j = 1; j < decl.Count; j++)
        {
            var t = decl[j];
            if (t == ".align")
            {
                if (j + 1 >= decl.Count || !int.TryParse(decl[j + 1], out var a) || a <= 0 || (a & (a - 1)) != 0 || a > 256)
                {
                    throw new PtxFormatException($"kernel {kernel}: .align is not followed by a power of two");
                }

                j++;

                // After .ptr, .align is the alignment of the memory pointed to, not of the parameter.
                if (!afterPtr)
                {
                    align = a;
                }
            }
            else if (t == ".ptr")
            {
                afterPtr = true;
            }
            else if (t is ".global" or ".const" or ".local" or ".shared")
            {
                // The pointer's state space.
            }
            else if (TypeSize(t) is var size and > 0)
            {
                typeSize = size;
            }
            else if (t == "[")
            {
                if (j + 2 >= decl.Count || !int.TryParse(decl[j + 1], out count) || count <= 0 || decl[j + 2] != "]")
                {
                    throw new PtxFormatException($"kernel {kernel}: parameter {name} has a bad array size");
                }

                j += 2;
            }
            else if (IsIdentifier(t) && name is null)
            {
                name = t;
            }
            else
            {
                throw new PtxFormatException($"kernel {kernel}: cannot read '{t}' in a parameter declaration");
            }
        }

        if (typeSize == 0 || name is null)
        {
            throw new PtxFormatException($"kernel {kernel}: parameter '{string.Join(' ', decl)}' has no type or no name");
        }

        var total = (long)typeSize * count;
        if (total > 4096)
        {
            throw new PtxFormatException($"kernel {kernel}: parameter {name} is {total} bytes, more than a launch can carry");
        }

        return new PtxParam(name, (int)total, align > 0 ? align : typeSize);
    }

    private static int TypeSize(string t) => t switch
    {
        ".b8" or ".u8" or ".s8" or ".pred" => 1,
        ".b16" or ".u16" or ".s16" or ".f16" or ".bf16" => 2,
        ".b32" or ".u32" or ".s32" or ".f32" or ".f16x2" or ".bf16x2" => 4,
        ".b64" or ".u64" or ".s64" or ".f64" or ".texref" or ".samplerref" or ".surfref" => 8,
        ".b128" => 16,
        _ => 0,
    };

    /// <summary>The name declared by a module-scope <c>.global</c>/<c>.const</c> statement starting at <paramref name="at"/>.</summary>
    private static string? VariableName(List<string> tokens, int at)
    {
        for (var j = at; j < tokens.Count && tokens[j] != ";"; j++)
        {
            var t = tokens[j];
            if (t == ".align")
            {
                j++;
            }
            else if (IsIdentifier(t))
            {
                return t;
            }
        }

        return null;
    }

    /// <summary>Skips a device function's name and parenthesized lists, which hold .param declarations of their own.</summary>
    private static void SkipParenthesized(List<string> tokens, ref int i)
    {
        var depth = 0;
        for (var j = i + 1; j < tokens.Count; j++)
        {
            var t = tokens[j];
            if (t == "(")
            {
                depth++;
            }
            else if (t == ")")
            {
                depth--;
            }
            else if (depth == 0 && t is "{" or ";")
            {
                i = j - 1;
                return;
            }
        }

        i = tokens.Count;
    }

    private static bool IsIdentifier(string t)
        => t.Length > 0 && (char.IsAsciiLetter(t[0]) || ((t[0] is '_' or '$' or '%') && t.Length > 1)) && t.All(static c => char.IsAsciiLetterOrDigit(c) || c is '_' or '$' or '%');

    /// <summary>Splits PTX into tokens: directives and identifiers, numbers, and single punctuation characters; comments and strings dropped.</summary>
    internal static List<string> Tokenize(string text)
    {
        var tokens = new List<string>();
        var sb = new StringBuilder();
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
            {
                while (i < text.Length && text[i] != '\n')
                {
                    i++;
                }
            }
            else if (c == '/' && i + 1 < text.Length && text[i + 1] == '*')
            {
                var end = text.IndexOf("*/", i + 2, StringComparison.Ordinal);
                if (end < 0)
                {
                    throw new PtxFormatException("a /* comment is never closed");
                }

                i = end + 2;
            }
            else if (c == '"')
            {
                var end = text.IndexOf('"', i + 1);
                if (end < 0)
                {
                    throw new PtxFormatException("a string is never closed");
                }

                i = end + 1;
            }
            else if (char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '$' or '%')
            {
                sb.Clear();
                while (i < text.Length && (char.IsAsciiLetterOrDigit(text[i]) || text[i] is '.' or '_' or '$' or '%'))
                {
                    sb.Append(text[i++]);
                }

                tokens.Add(sb.ToString());
            }
            else
            {
                tokens.Add(c.ToString());
                i++;
            }
        }

        return tokens;
    }
}
