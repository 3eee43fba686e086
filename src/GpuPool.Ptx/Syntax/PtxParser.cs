namespace GpuPool.Ptx.Syntax;

/// <summary>Reads PTX text, as nvcc and clang write it (ISA 6.x to 7.8), into a <see cref="PtxProgram"/>.</summary>
/// <remarks>
/// The reader checks structure only: whether a register was declared or an opcode exists is for a later stage.
/// Skipped on the way: comments, <c>.file</c>, <c>.loc</c>, <c>.section</c> blocks (debug information), <c>.pragma</c>
/// (at module scope, on a function and in a body) and <c>.alias</c>. <c>.branchtargets</c> and <c>.calltargets</c> read
/// as <see cref="PtxTargetList"/>; a register declared without '%' reads as a <see cref="PtxRegister"/> where it is in scope.
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
