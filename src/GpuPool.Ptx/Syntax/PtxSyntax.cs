namespace GpuPool.Ptx.Syntax;

/// <summary>A PTX module as written: its header, its module-scope variables and its functions (kernels and .func).</summary>
public sealed record PtxProgram(
    int VersionMajor,
    int VersionMinor,
    IReadOnlyList<string> Target,
    int AddressSize,
    IReadOnlyList<PtxVariable> Variables,
    IReadOnlyList<PtxFunction> Functions);

/// <summary>The state spaces of PTX; <see cref="None"/> where a declaration or instruction names none (generic).</summary>
public enum PtxStateSpace
{
    None,
    Reg,
    Sreg,
    Const,
    Global,
    Local,
    Param,
    Shared,
    Tex,
}

public enum PtxLinkage
{
    None,
    Visible,
    Extern,
    Weak,
    Common,
}

/// <summary>
/// A variable declared in a state space: at module scope (.global, .const, .shared, .local), or in a function body
/// (.local, .shared, .param). <see cref="Type"/> is the element type without its dot ("b8", "u32", "f32", ...);
/// <see cref="Dims"/> is null for a scalar, else the array's dimensions, 0 for an unsized one (<c>.extern .shared .b8 s[];</c>).
/// <see cref="Initializer"/> is the initializer's text after '=' (null when there is none); the module readers of
/// GpuPool.Modules turn it into bytes.
/// </summary>
public sealed record PtxVariable(
    string Name,
    PtxStateSpace Space,
    string Type,
    int VectorWidth,
    int Align,
    IReadOnlyList<long>? Dims,
    string? Initializer,
    PtxLinkage Linkage,
    int Line)
{
    /// <summary>Bytes of one element: the type's size times the vector width.</summary>
    public int ElementBytes => PtxTypes.SizeOf(Type) * VectorWidth;

    /// <summary>Bytes of the whole variable (0 for an unsized array).</summary>
    public long Bytes => Dims is null ? ElementBytes : Dims.Aggregate((long)ElementBytes, (n, d) => n * d);
}

/// <summary>
/// A kernel (<see cref="IsEntry"/>) or a .func: its parameters, its return values (.func only), its performance
/// directives, and its body (null for a declaration without one, such as <c>.extern .func vprintf(...)</c>).
/// </summary>
public sealed record PtxFunction(
    string Name,
    bool IsEntry,
    PtxLinkage Linkage,
    IReadOnlyList<PtxParameter> Parameters,
    IReadOnlyList<PtxParameter> Returns,
    PtxFunctionDirectives Directives,
    IReadOnlyList<PtxStatement>? Body,
    int Line);

/// <summary>
/// A parameter or return value: in the .param space (kernels always; .func usually) or .reg (old-style .func ABI).
/// <see cref="ArrayLength"/> is 0 for a scalar, else the array's length (<c>.param .align 8 .b8 p[24]</c>).
/// <see cref="PointerSpace"/> is the space of <c>.ptr.global.align 4</c> attributes, <see cref="PtxStateSpace.None"/> if absent.
/// </summary>
public sealed record PtxParameter(
    string Name,
    PtxStateSpace Space,
    string Type,
    int Align,
    int ArrayLength,
    PtxStateSpace PointerSpace = PtxStateSpace.None,
    int PointerAlign = 0)
{
    public int Bytes => PtxTypes.SizeOf(Type) * Math.Max(1, ArrayLength);
}

/// <summary>.maxntid, .reqntid, .minnctapersm, .maxnreg, .maxnctapersm and .noreturn, as given (0 or null when absent).</summary>
public sealed record PtxFunctionDirectives(
    IReadOnlyList<int>? MaxNtid = null,
    IReadOnlyList<int>? ReqNtid = null,
    int MinNctaPerSm = 0,
    int MaxNReg = 0,
    bool NoReturn = false)
{
    public static readonly PtxFunctionDirectives None = new();

    /// <summary>.explicitcluster (sm_90): the kernel must be launched with a cluster size.</summary>
    public bool ExplicitCluster { get; init; }

    /// <summary>.reqnctapercluster x[, y, z] (sm_90), null when absent.</summary>
    public IReadOnlyList<int>? ReqNctaPerCluster { get; init; }

    /// <summary>.maxclusterrank n (sm_90), 0 when absent.</summary>
    public int MaxClusterRank { get; init; }
}

/// <summary>A statement of a function body, with the line of the module it starts on (1-based).</summary>
public abstract record PtxStatement(int Line);

public sealed record PtxLabel(string Name, int Line) : PtxStatement(Line);

/// <summary>
/// <c>.reg .f32 %f&lt;12&gt;;</c> (Count 12: %f0 to %f11) or <c>.reg .pred p, q;</c> (one declaration per name, Count 0).
/// <see cref="Type"/> is without its dot ("pred", "b32", "f64", ...).
/// </summary>
public sealed record PtxRegisterDeclaration(string Type, int VectorWidth, string Name, int Count, int Line) : PtxStatement(Line);

/// <summary>A .local, .shared or .param variable declared in a body.</summary>
public sealed record PtxVariableDeclaration(PtxVariable Variable, int Line) : PtxStatement(Line);

/// <summary>A nested scope <c>{ ... }</c> (nvcc writes one around each call sequence): its names are its own.</summary>
public sealed record PtxBlock(IReadOnlyList<PtxStatement> Body, int Line) : PtxStatement(Line);

/// <summary><c>name: .callprototype (.param .b32 _) _ (.param .b64 _);</c>, the signature an indirect call names.</summary>
public sealed record PtxCallPrototype(string Name, IReadOnlyList<PtxParameter> Returns, IReadOnlyList<PtxParameter> Parameters, int Line) : PtxStatement(Line);

/// <summary>
/// An instruction: its guard (<c>@%p</c> / <c>@!%p</c>), its opcode ("ld", "add", "setp", ...), its modifiers in the
/// order written, without their dots (<c>ld.global.nc.v4.f32</c>: "global", "nc", "v4", "f32"), and its operands.
/// </summary>
public sealed record PtxInstruction(
    PtxGuard? Guard,
    string Opcode,
    IReadOnlyList<string> Modifiers,
    IReadOnlyList<PtxOperand> Operands,
    int Line) : PtxStatement(Line)
{
    public bool Has(string modifier) => Modifiers.Contains(modifier);

    public override string ToString()
        => $"{(Guard is null ? "" : Guard + " ")}{Opcode}{string.Concat(Modifiers.Select(m => "." + m))}{(Operands.Count == 0 ? "" : " " + string.Join(", ", Operands))}";
}

public sealed record PtxGuard(string Predicate, bool Negated)
{
    public override string ToString() => Negated ? $"@!{Predicate}" : $"@{Predicate}";
}

/// <summary>An operand of an instruction.</summary>
public abstract record PtxOperand;

/// <summary>A register, declared or special, by its full name: "%r1", "%p2", "%tid.x", "%laneid", "%envreg3".</summary>
public sealed record PtxRegister(string Name) : PtxOperand
{
    public override string ToString() => Name;
}

/// <summary>An integer literal as 64 bits (a negative one sign-extended), and whether it carried the U suffix.</summary>
public sealed record PtxInteger(long Value, bool Unsigned = false) : PtxOperand
{
    public override string ToString() => Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A floating-point literal: 0fXXXXXXXX (<see cref="Single"/>), 0dXXXXXXXXXXXXXXXX, or a decimal one (a double).</summary>
public sealed record PtxFloat(double Value, bool Single) : PtxOperand
{
    public override string ToString() => Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A name that is not a register: a variable, a function, a label, a parameter; with an offset (<c>table+8</c>).</summary>
public sealed record PtxSymbol(string Name, long Offset = 0) : PtxOperand
{
    public override string ToString() => Offset == 0 ? Name : $"{Name}+{Offset}";
}

/// <summary>
/// A memory operand <c>[base+offset]</c>: base a register or a symbol (null for an absolute address <c>[256]</c>).
/// </summary>
public sealed record PtxAddress(PtxOperand? Base, long Offset) : PtxOperand
{
    public override string ToString() => Base is null ? $"[{Offset}]" : Offset == 0 ? $"[{Base}]" : $"[{Base}+{Offset}]";
}

/// <summary>A vector operand <c>{%f1, %f2, _, %f4}</c>.</summary>
public sealed record PtxVector(IReadOnlyList<PtxOperand> Elements) : PtxOperand
{
    public override string ToString() => "{" + string.Join(", ", Elements) + "}";
}

/// <summary>The sink <c>_</c>, a destination whose value is dropped.</summary>
public sealed record PtxSink : PtxOperand
{
    public static readonly PtxSink Instance = new();

    public override string ToString() => "_";
}

/// <summary>A negated predicate source <c>!%p</c>.</summary>
public sealed record PtxNot(PtxOperand Operand) : PtxOperand
{
    public override string ToString() => "!" + Operand;
}

/// <summary>The two destinations <c>%p|%q</c> of setp and friends.</summary>
public sealed record PtxPredicatePair(PtxOperand First, PtxOperand Second) : PtxOperand
{
    public override string ToString() => $"{First}|{Second}";
}

/// <summary>A parenthesised list: a call's return and argument lists <c>(retval0)</c>, <c>(param0, param1)</c>.</summary>
public sealed record PtxList(IReadOnlyList<PtxOperand> Elements) : PtxOperand
{
    public override string ToString() => "(" + string.Join(", ", Elements) + ")";
}

/// <summary>Any other bracketed operand, element by element (texture and surface operands: <c>[tex, {%f1, %f2}]</c>).</summary>
public sealed record PtxBracket(IReadOnlyList<PtxOperand> Elements) : PtxOperand
{
    public override string ToString() => "[" + string.Join(", ", Elements) + "]";
}

/// <summary>Sizes of PTX's fundamental types, by name without the dot.</summary>
public static class PtxTypes
{
    public static int SizeOf(string type) => type switch
    {
        "pred" => 1,
        "b8" or "s8" or "u8" => 1,
        "b16" or "s16" or "u16" or "f16" or "bf16" => 2,
        "b32" or "s32" or "u32" or "f32" or "f16x2" or "bf16x2" or "tf32" => 4,
        "b64" or "s64" or "u64" or "f64" => 8,
        "b128" => 16,
        _ => throw new ArgumentException($"'{type}' is not a PTX type", nameof(type)),
    };

    public static bool IsType(string name) => name is "pred" or "b8" or "s8" or "u8" or "b16" or "s16" or "u16" or "f16" or "bf16"
        or "b32" or "s32" or "u32" or "f32" or "f16x2" or "bf16x2" or "tf32" or "b64" or "s64" or "u64" or "f64" or "b128";
}

/// <summary>
/// <c>name: .branchtargets L1, L2;</c> (<see cref="IsCallTargets"/> false) or <c>name: .calltargets f, g;</c>: the
/// labels a <c>brx.idx</c>, or the functions an indirect call, may go to.
/// </summary>
public sealed record PtxTargetList(string Name, bool IsCallTargets, IReadOnlyList<string> Targets, int Line) : PtxStatement(Line);
