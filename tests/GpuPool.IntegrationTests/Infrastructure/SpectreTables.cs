namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// Reads the box-drawn tables the CLI prints. With output redirected Spectre.Console lays tables out
/// 80 columns wide and folds long cells over several lines, so a column's text is read by joining its
/// pieces across the body lines.
/// </summary>
internal sealed class SpectreTable
{
    private readonly List<string[]> _body = [];

    /// <summary>The tables in <paramref name="output"/>, in order.</summary>
    public static IReadOnlyList<SpectreTable> Parse(string output)
    {
        var tables = new List<SpectreTable>();
        SpectreTable? current = null;
        var inBody = false;
        foreach (var raw in output.Split('\n'))
        {
            var line = raw.Trim();
            if (line.StartsWith('┌'))
            {
                current = new SpectreTable();
                tables.Add(current);
                inBody = false;
            }
            else if (line.StartsWith('├'))
            {
                inBody = true;
            }
            else if (line.StartsWith('└'))
            {
                current = null;
            }
            else if (current is not null && inBody && line.StartsWith('│'))
            {
                current._body.Add(line.Trim('│').Split('│').Select(c => c.Trim()).ToArray());
            }
        }

        return tables;
    }

    /// <summary>
    /// Everything column <paramref name="index"/> shows, top to bottom, joined across the folds; whitespace
    /// is dropped, since a fold may fall on a space or inside a word.
    /// </summary>
    public string Column(int index) => string.Concat(_body.SelectMany(cells => cells[index]).Where(c => !char.IsWhiteSpace(c)));
}
