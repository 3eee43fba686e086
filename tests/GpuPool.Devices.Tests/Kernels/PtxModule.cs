namespace GpuPool.Devices.Tests.Kernels;

/// <summary>One parameter of a PTX entry: its state-space type (".u64", ".f32", …) and name.</summary>
internal sealed record PtxParam(string Type, string Name);

/// <summary>One <c>.entry</c> of a PTX module with its parameters in declaration order.</summary>
internal sealed record PtxEntry(string Name, IReadOnlyList<PtxParam> Params);

/// <summary>
/// What the kernel tests read from a PTX module's text: the header directives, the entries with their parameter lists,
/// and any <c>.extern</c> declarations (which a driver would have to link). A line parser, strict about the parameter
/// forms it accepts, so that anything unexpected fails loudly instead of being misread.
/// </summary>
internal sealed class PtxModule
{
    private PtxModule(string? version, string? target, int? addressSize, IReadOnlyList<PtxEntry> entries, IReadOnlyList<string> externs)
    {
        Version = version;
        Target = target;
        AddressSize = addressSize;
        Entries = entries;
        Externs = externs;
    }

    public string? Version { get; }

    public string? Target { get; }

    public int? AddressSize { get; }

    public IReadOnlyList<PtxEntry> Entries { get; }

    public IReadOnlyList<string> Externs { get; }

    public static PtxModule Parse(string text)
    {
        string? version = null, target = null;
        int? addressSize = null;
        var entries = new List<PtxEntry>();
        var externs = new List<string>();
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = StripComment(lines[i]);
            if (line.Length == 0)
            {
                continue;
            }

            var words = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            switch (words[0])
            {
                case ".version":
                    version = Single(words, i);
                    continue;
                case ".target":
                    target = Single(words, i);
                    continue;
                case ".address_size":
                    addressSize = int.Parse(Single(words, i), System.Globalization.CultureInfo.InvariantCulture);
                    continue;
                case ".extern":
                    externs.Add(line);
                    continue;
            }

            if (words.Contains(".entry"))
            {
                entries.Add(ParseEntry(lines, ref i, line));
            }
        }

        return new PtxModule(version, target, addressSize, entries, externs);
    }

    // ".visible .entry name(" followed by one ".param .type name," per line and a closing ")"; or "name()" on one line.
    private static PtxEntry ParseEntry(string[] lines, ref int i, string line)
    {
        var afterEntry = line[(line.IndexOf(".entry", StringComparison.Ordinal) + ".entry".Length)..];
        var open = afterEntry.IndexOf('(', StringComparison.Ordinal);
        if (open < 0)
        {
            throw Bad(i, line, "an .entry without '(' on its line");
        }

        var name = afterEntry[..open].Trim();
        var rest = afterEntry[(open + 1)..].Trim();
        var parameters = new List<PtxParam>();
        if (rest.StartsWith(')'))
        {
            return new PtxEntry(name, parameters);
        }

        if (rest.Length != 0)
        {
            throw Bad(i, line, "parameters on the .entry line");
        }

        for (i++; i < lines.Length; i++)
        {
            var param = StripComment(lines[i]);
            if (param.StartsWith(')'))
            {
                return new PtxEntry(name, parameters);
            }

            var words = param.TrimEnd(',').Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (words.Length != 3 || words[0] != ".param" || !words[1].StartsWith('.') || words[2].Contains('['))
            {
                throw Bad(i, param, "a parameter that is not '.param .type name'");
            }

            parameters.Add(new PtxParam(words[1], words[2]));
        }

        throw Bad(i, line, $"entry {name} has no closing ')'");
    }

    private static string StripComment(string line)
    {
        var comment = line.IndexOf("//", StringComparison.Ordinal);
        return (comment >= 0 ? line[..comment] : line).Trim();
    }

    private static string Single(string[] words, int i)
        => words.Length == 2 ? words[1] : throw Bad(i, string.Join(' ', words), $"{words[0]} with {words.Length - 1} operands");

    private static FormatException Bad(int i, string line, string what) => new($"PTX line {i + 1}: {what}: '{line}'");
}
