namespace GpuPool.Ptx.Syntax;

/// <summary>PTX text that does not read as a module: where (1-based line and column) and what was expected there.</summary>
public sealed class PtxSyntaxException : Exception
{
    public PtxSyntaxException(int line, int column, string message)
        : base($"line {line}, column {column}: {message}")
    {
        Line = line;
        Column = column;
    }

    public int Line { get; }

    public int Column { get; }
}
