namespace GpuPool.Ptx.Syntax;

/// <summary>Reads PTX text, as nvcc and clang write it (ISA 6.x to 7.8), into a <see cref="PtxProgram"/>.</summary>
/// <remarks>
/// The reader checks structure only: whether a register was declared or an opcode exists is for a later stage.
/// Skipped on the way: comments, <c>.file</c>, <c>.loc</c>, <c>.section</c> blocks (debug information), <c>.pragma</c>
/// (at module scope, on a function and in a body), <c>.alias</c>, and the cluster directives of sm_90
/// (<c>.explicitcluster</c>, <c>.reqnctapercluster</c>, <c>.maxclusterrank</c>).
/// </remarks>
public static class PtxParser
{
    /// <summary>The module <paramref name="text"/> holds; a <see cref="PtxSyntaxException"/> naming line and column if it is malformed.</summary>
    public static PtxProgram Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new PtxReader(text).ReadProgram();
    }
}
