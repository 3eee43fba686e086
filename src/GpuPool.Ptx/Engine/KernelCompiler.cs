using System.Globalization;
using System.Reflection;
using System.Reflection.Emit;
using GpuPool.Ptx.Semantics;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>How a value sits on the IL stack: PTX's integer types of up to 32 bits (and predicates) as int32, and so on.</summary>
internal enum Kind
{
    I32,
    I64,
    F32,
    F64,
}

/// <summary>
/// Compiles one kernel to a .NET method, <c>int Run(LaneContext thread, int resume)</c>, that runs one thread from
/// <c>resume</c> (0: the start; k+1: after collective k) until it exits (-1), must stop (-2), or reaches collective
/// instruction k (k). PTX registers are the method's locals; at a collective they are spilled to the thread's slots,
/// where the block runner reads the operands and writes the results, and loaded again on resume.
/// </summary>
internal sealed partial class KernelCompiler
{
    public const int Exited = -1;
    public const int Stopped = -2;

    /// <summary>What the vector method returns when its threads diverged, each to resume alone at its scalar entry.</summary>
    public const int Left = -3;

    /// <summary>What a called function returns when it returns to its caller (its thread goes on).</summary>
    public const int Returned = 0;

    /// <summary>Each thread's stack for the functions it calls, as CUDA's default limit is (cudaLimitStackSize) and then some.</summary>
    public const ulong StackBytes = 8 << 10;

    private static readonly FieldInfo SpillField = Field(nameof(LaneContext.Spill));
    private static readonly FieldInfo SpillBaseField = Field(nameof(LaneContext.SpillBase));
    private static readonly FieldInfo SymbolsField = Field(nameof(LaneContext.Symbols));

    private readonly ModuleLayout _module;
    private readonly PtxFunction _function;
    private readonly DynamicMethod _method;
    private readonly ILGenerator _il;
    private readonly List<Register> _registers = [];
    private readonly List<Dictionary<string, Register>> _scopes = [];
    private readonly Dictionary<string, Label> _labels = new(StringComparer.Ordinal);
    private readonly HashSet<string> _marked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _labelLines = new(StringComparer.Ordinal);
    private readonly List<CollectiveSite> _collectives = [];
    private readonly List<Label> _resumeLabels = [];
    private readonly List<(Label Spill, PtxInstruction At)> _spills = [];
    private readonly List<(Label Before, PtxInstruction At)> _entries = [];
    private bool _vectorEntries;
    private readonly CompileUnit _unit;
    private readonly bool _isKernel;
    private readonly Dictionary<string, WindowVariable> _windowVariables = new(StringComparer.Ordinal);
    private readonly Label _stop;
    private readonly Label _dispatch;
    private ulong _localBytes;
    private readonly ulong _frameBytes;
    private LocalBuilder? _frame;
    private ulong _sharedBytes;
    private PtxInstruction _current = null!;
    private LocalBuilder? _cacheLocal;
    private Liveness? _liveness;

    /// <summary>False for the check at module load, which makes the body's IL only (see <see cref="Check"/>).</summary>
    private bool _keep;

    private KernelCompiler(ModuleLayout module, PtxFunction function, CompileUnit unit, DynamicMethod method)
    {
        _module = module;
        _function = function;
        _unit = unit;
        _isKernel = function.IsEntry;
        _method = method;
        _method.InitLocals = false;
        _il = _method.GetILGenerator();
        _stop = _il.DefineLabel();
        _dispatch = _il.DefineLabel();
        _sharedBytes = module.StaticSharedBytes;
        foreach (var (name, offset) in module.SharedVariables)
        {
            _windowVariables[name] = new WindowVariable(PtxStateSpace.Shared, offset);
        }

        _frameBytes = Align(FrameBytes(function.Body ?? [], 0), 16);
    }

    /// <summary>Compiles <paramref name="function"/>, or refuses it naming the first instruction the engine does not run.</summary>
    public static CompiledKernel Compile(ModuleLayout module, PtxFunction function) => Compile(module, function, keep: true)!;

    /// <summary>
    /// Compiles <paramref name="function"/> only to see that the engine runs it (the check at module load): the IL is
    /// made, and so every refusal found, but no vector code and no delegate.
    /// </summary>
    public static void Check(ModuleLayout module, PtxFunction function) => Compile(module, function, keep: false);

    private static CompiledKernel? Compile(ModuleLayout module, PtxFunction function, bool keep)
    {
        var method = new DynamicMethod("ptx_" + function.Name, typeof(int), [typeof(LaneContext), typeof(int)], typeof(LaneContext).Module, skipVisibility: true);
        var compiler = new KernelCompiler(module, function, new CompileUnit { Kernel = function.Name }, method);
        return compiler.Build(keep);
    }

    /// <summary>Compiles a function a kernel calls into <paramref name="method"/>, in the kernel's unit.</summary>
    internal static void CompileFunction(ModuleLayout module, PtxFunction function, CompileUnit unit, DynamicMethod method)
        => new KernelCompiler(module, function, unit, method).BuildFunction();

    private CompiledKernel? Build(bool keep)
    {
        var parameters = LayParameters();
        PlaceShared(_function.Body ?? []);
        _unit.KernelSharedBytes = _sharedBytes;

        // Dynamic shared memory starts after the static, 16-byte aligned, as on a GPU.
        foreach (var name in _module.DynamicShared)
        {
            _windowVariables[name] = new WindowVariable(PtxStateSpace.Shared, Align(_sharedBytes, 16));
        }

        _scopes.Add([]);

        // The carry flag is the first register, as Liveness numbers them.
        CarryFlag();

        // A kernel the vector compiler may take gets an entry before each guarded instruction, where its threads diverge.
        // The check at load makes neither (nor the spills at collectives, nor liveness for them): what it looks for, a
        // refusal, comes from the body alone, and a library's module has thousands of kernels to check.
        _keep = keep;
        _vectorEntries = keep && SimdCompiler.Worth(_function);
        if (_vectorEntries)
        {
            _liveness ??= Liveness.Analyze(_function.Body!);
        }

        _il.Emit(OpCodes.Br, _dispatch);
        var start = _il.DefineLabel();
        _il.MarkLabel(start);
        EmitLoadCache();
        EmitBody(_function.Body ?? throw new PtxNotSupportedException($"kernel {_function.Name} has no body"));
        _il.Emit(OpCodes.Ldc_I4, Exited);
        _il.Emit(OpCodes.Ret);

        _il.MarkLabel(_stop);
        _il.Emit(OpCodes.Ldc_I4, Stopped);
        _il.Emit(OpCodes.Ret);

        if (!keep)
        {
            CheckFrame();
            CheckLabels();
            return null;
        }

        // Collective k: hand over the registers live where it starts, return k; resume after it with those live after it.
        var exact = _liveness is not null && _liveness.Registers == _registers.Count;
        var stubs = new Label[_resumeLabels.Count];
        for (var k = 0; k < stubs.Length; k++)
        {
            var (spill, at) = _spills[k];
            _il.MarkLabel(spill);
            EmitStore(exact ? _liveness!.LiveIn(at).Select(n => _registers[n]) : _registers);
            _il.Emit(OpCodes.Ldc_I4, k);
            _il.Emit(OpCodes.Ret);

            stubs[k] = _il.DefineLabel();
            _il.MarkLabel(stubs[k]);
            EmitLoadCache();
            EmitLoad(exact ? _liveness!.LiveOut(at).Select(n => _registers[n]) : _registers);
            _il.Emit(OpCodes.Br, _resumeLabels[k]);
        }

        // Entry e (number 1 + collectives + e): a thread that left the vector code before a guarded instruction.
        var entries = new Label[_entries.Count];
        var numbers = new Dictionary<PtxInstruction, int>(ReferenceEqualityComparer.Instance);
        for (var e = 0; e < entries.Length; e++)
        {
            var (before, at) = _entries[e];
            entries[e] = _il.DefineLabel();
            _il.MarkLabel(entries[e]);
            EmitLoadCache();
            EmitLoad(_liveness!.LiveIn(at).Select(n => _registers[n]));
            _il.Emit(OpCodes.Br, before);
            numbers[at] = 1 + stubs.Length + e;
        }

        _il.MarkLabel(_dispatch);
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Switch, [start, .. stubs, .. entries]);
        _il.Emit(OpCodes.Br, start);

        CheckFrame();
        CheckLabels();
        var vector = _vectorEntries && exact && _liveness!.Registers == _registers.Count && !_unit.Calls
            ? SimdCompiler.TryCompile(_module, _function, _liveness, _registers.Count, _windowVariables.ToDictionary(w => w.Key, w => (w.Value.Space, w.Value.Offset)), parameters.Bytes, numbers, _unit)
            : null;
        var run = _method.CreateDelegate<Func<LaneContext, int, int>>();
        return new CompiledKernel(
            _function.Name,
            run,
            parameters.Offsets,
            parameters.Bytes,
            _registers.Count,
            _sharedBytes,
            _frameBytes + (_unit.Calls ? StackBytes : 0),
            [.. _collectives],
            [.. _unit.Sites],
            _unit.CachedSites)
        {
            Vector = vector?.Run,
            VectorScalarsAfter = vector?.ScalarsAfter ?? [],
        };
    }

    private (IReadOnlyDictionary<string, int> Offsets, int Bytes) LayParameters()
    {
        var layout = ParameterLayout(_function);
        foreach (var (name, offset) in layout.Offsets)
        {
            _windowVariables[name] = new WindowVariable(PtxStateSpace.Param, (ulong)offset);
        }

        return layout;
    }

    /// <summary>Where each parameter sits in the block cuLaunchKernel packs: at an offset aligned as it asks (its size at least).</summary>
    internal static (IReadOnlyDictionary<string, int> Offsets, int Bytes) ParameterLayout(PtxFunction function)
    {
        var offsets = new Dictionary<string, int>(StringComparer.Ordinal);
        var offset = 0;
        foreach (var p in function.Parameters)
        {
            var align = Math.Max(p.Align, PtxTypes.SizeOf(p.Type));
            offset = (int)Align((ulong)offset, (ulong)align);
            offsets[p.Name] = offset;
            offset += p.Bytes;
        }

        return (offsets, offset);
    }

    /// <summary>The body's .shared variables (nvcc declares a function's static __shared__ arrays there), before any code.</summary>
    private void PlaceShared(IReadOnlyList<PtxStatement> body)
    {
        foreach (var statement in body)
        {
            if (statement is PtxVariableDeclaration { Variable: { Space: PtxStateSpace.Shared } v })
            {
                _sharedBytes = Align(_sharedBytes, (ulong)Math.Max(v.Align, v.ElementBytes));
                _windowVariables[v.Name] = new WindowVariable(PtxStateSpace.Shared, _sharedBytes);
                _sharedBytes += (ulong)v.Bytes;
            }
            else if (statement is PtxBlock block)
            {
                PlaceShared(block.Body);
            }
        }
    }

    private void EmitBody(IReadOnlyList<PtxStatement> body)
    {
        foreach (var statement in body)
        {
            switch (statement)
            {
                case PtxRegisterDeclaration r:
                    Declare(r);
                    break;
                case PtxVariableDeclaration { Variable.Space: PtxStateSpace.Shared }:
                    break;
                case PtxVariableDeclaration v:
                    Place(v.Variable);
                    break;
                case PtxLabel l:
                    _il.MarkLabel(LabelOf(l.Name));
                    _marked.Add(l.Name);
                    break;
                case PtxBlock b:
                    _scopes.Add([]);
                    EmitBody(b.Body);
                    _scopes.RemoveAt(_scopes.Count - 1);
                    break;
                case PtxCallPrototype:
                    break;
                case PtxInstruction i:
                    _current = i;
                    EmitGuarded(i);
                    break;
                default:
                    throw Refuse(statement.Line, $"the statement {statement.GetType().Name}");
            }
        }
    }

    private void Declare(PtxRegisterDeclaration declaration)
    {
        if (declaration.VectorWidth != 1)
        {
            throw Refuse(declaration.Line, "vector registers (.reg .v2/.v4)");
        }

        var kind = declaration.Type == "pred" ? Kind.I32 : KindOf(declaration.Type, declaration.Line);
        var names = declaration.Count == 0
            ? [declaration.Name]
            : Enumerable.Range(0, declaration.Count).Select(i => declaration.Name + i.ToString(CultureInfo.InvariantCulture));
        foreach (var name in names)
        {
            var register = new Register(name, kind, _il.DeclareLocal(TypeOf(kind)), _registers.Count);
            _registers.Add(register);
            _scopes[^1][name] = register;
        }
    }

    /// <summary>A body's .local, .shared or .param variable: a place in the thread's local or the block's shared window.</summary>
    private void Place(PtxVariable variable)
    {
        var align = (ulong)Math.Max(variable.Align, variable.ElementBytes);
        switch (variable.Space)
        {
            case PtxStateSpace.Local or PtxStateSpace.Param:
                _localBytes = Align(_localBytes, align);
                _windowVariables[variable.Name] = new WindowVariable(PtxStateSpace.Local, _localBytes, Bytes: variable.Bytes);
                _localBytes += (ulong)variable.Bytes;
                break;
            default:
                throw Refuse(variable.Line, $"a .{variable.Space.ToString().ToLowerInvariant()} variable declared in a function body");
        }
    }

    private void EmitGuarded(PtxInstruction i)
    {
        if (_vectorEntries && SimdCompiler.MayLeave(i))
        {
            var before = _il.DefineLabel();
            _il.MarkLabel(before);
            _entries.Add((before, i));
        }

        if (i.Guard is null)
        {
            EmitInstruction(i);
            return;
        }

        var skip = _il.DefineLabel();

        LoadRegister(i.Guard.Predicate, Kind.I32);
        _il.Emit(i.Guard.Negated ? OpCodes.Brtrue : OpCodes.Brfalse, skip);
        EmitInstruction(i);
        _il.MarkLabel(skip);
    }

    /// <summary>A site for faults' messages: the instruction and its line.</summary>
    private int Site() => Site($"line {_current.Line} ({_current})");

    private int Site(string where)
    {
        _unit.Sites.Add(_isKernel ? where : $"function {_function.Name}, {where}");
        return _unit.Sites.Count - 1;
    }

    private Label LabelOf(string name)
    {
        if (!_labels.TryGetValue(name, out var label))
        {
            label = _il.DefineLabel();
            _labels[name] = label;
            _labelLines[name] = _current?.Line ?? 0;
        }

        return label;
    }

    /// <summary>A branch to a label the body never defines is the module's fault, refused naming it.</summary>
    private void CheckLabels()
    {
        foreach (var (name, line) in _labelLines)
        {
            if (!_marked.Contains(name))
            {
                throw Refuse(line, $"a branch to {name}, which the kernel does not define");
            }
        }
    }

    private Register? Find(string name)
    {
        for (var s = _scopes.Count - 1; s >= 0; s--)
        {
            if (_scopes[s].TryGetValue(name, out var r))
            {
                return r;
            }
        }

        return null;
    }

    /// <summary>The carry flag of add.cc and its kin, declared at its first use in the kernel's outermost scope.</summary>
    private Register CarryFlag()
    {
        const string name = "%cc";
        if (_scopes[0].TryGetValue(name, out var flag))
        {
            return flag;
        }

        flag = new Register(name, Kind.I32, _il.DeclareLocal(typeof(int)), _registers.Count);
        _registers.Add(flag);
        _scopes[0][name] = flag;
        return flag;
    }

    private Register RegisterOf(string name)
        => Find(name) ?? throw Refuse(_current.Line, $"register {name}, which is not declared");

    private PtxNotSupportedException Refuse(int line, string what)
        => new($"kernel {_unit.Kernel}{(_isKernel ? "" : $" (in the function {_function.Name} it calls)")}, line {line}: the cpu backend's PTX engine does not run {what}");

    private PtxNotSupportedException Refuse(string what) => Refuse(_current.Line, $"{what} (`{_current}`)");

    private static FieldInfo Field(string name) => typeof(LaneContext).GetField(name)!;

    private static Type TypeOf(Kind kind) => kind switch
    {
        Kind.I32 => typeof(int),
        Kind.I64 => typeof(long),
        Kind.F32 => typeof(float),
        _ => typeof(double),
    };

    internal static Kind KindOf(string type, int line) => type switch
    {
        "pred" or "b8" or "u8" or "s8" or "b16" or "u16" or "s16" or "f16" or "bf16" or "b32" or "u32" or "s32" or "f16x2" or "bf16x2" or "tf32" => Kind.I32,
        "b64" or "u64" or "s64" => Kind.I64,
        "f32" => Kind.F32,
        "f64" => Kind.F64,
        _ => throw new PtxNotSupportedException($"line {line}: the cpu backend's PTX engine does not run values of type .{type}"),
    };

    internal static ulong Align(ulong value, ulong align) => align <= 1 ? value : (value + align - 1) / align * align;

    private void EmitLoadCache()
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.SiteCache)));
        _il.Emit(OpCodes.Stloc, CacheLocal());
    }

    /// <summary>Pushes the thread's spill array and the index of <paramref name="r"/>'s slot in it.</summary>
    private void EmitSlot(Register r)
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, SpillField);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, SpillBaseField);
        _il.Emit(OpCodes.Ldc_I4, r.Slot);
        _il.Emit(OpCodes.Add);
    }

    private void EmitStore(IEnumerable<Register> registers)
    {
        foreach (var r in registers)
        {
            EmitSlot(r);
            _il.Emit(OpCodes.Ldloc, r.Local);
            ToBits(r.Kind);
            _il.Emit(OpCodes.Stelem_I8);
        }
    }

    private void EmitLoad(IEnumerable<Register> registers)
    {
        foreach (var r in registers)
        {
            EmitSlot(r);
            _il.Emit(OpCodes.Ldelem_I8);
            FromBits(r.Kind);
            _il.Emit(OpCodes.Stloc, r.Local);
        }
    }

    /// <summary>A value of <paramref name="kind"/> on the stack as the 64 bits of its slot (32-bit values sign-extended).</summary>
    private void ToBits(Kind kind)
    {
        switch (kind)
        {
            case Kind.I32:
                _il.Emit(OpCodes.Conv_I8);
                break;
            case Kind.F32:
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.SingleToInt32Bits))!);
                _il.Emit(OpCodes.Conv_I8);
                break;
            case Kind.F64:
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.DoubleToInt64Bits))!);
                break;
        }
    }

    private void FromBits(Kind kind)
    {
        switch (kind)
        {
            case Kind.I32:
                _il.Emit(OpCodes.Conv_I4);
                break;
            case Kind.F32:
                _il.Emit(OpCodes.Conv_I4);
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.Int32BitsToSingle))!);
                break;
            case Kind.F64:
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.Int64BitsToDouble))!);
                break;
        }
    }

    /// <summary>
    /// Reaches collective instruction <paramref name="site"/>: spill, return its number; resume after it. The spill is
    /// emitted after the body, once every register it may name is declared.
    /// </summary>
    private void EmitCollective(CollectiveSite site)
    {
        if (!_isKernel)
        {
            throw Refuse("a barrier or warp-wide instruction inside a called function");
        }

        if (_keep)
        {
            _liveness ??= Liveness.Analyze(_function.Body!);
        }

        _collectives.Add(site);
        var after = _il.DefineLabel();
        var spill = _il.DefineLabel();
        _resumeLabels.Add(after);
        _spills.Add((spill, _current));
        _il.Emit(OpCodes.Br, spill);
        _il.MarkLabel(after);
    }

    private SiteOperand SiteSource(PtxOperand operand) => operand switch
    {
        PtxRegister r when !r.Name.Contains('.', StringComparison.Ordinal) && Find(r.Name) is { } reg => new SiteOperand(reg.Slot),
        PtxNot { Operand: PtxRegister r } when Find(r.Name) is { } reg => new SiteOperand(reg.Slot, Negate: true),
        PtxInteger n => new SiteOperand(-1, n.Value),
        _ => throw Refuse($"the operand {operand} here"),
    };

    private SiteOperand SiteDest(PtxOperand operand) => operand switch
    {
        PtxSink => SiteOperand.Sink,
        PtxRegister r => new SiteOperand(RegisterOf(r.Name).Slot),
        _ => throw Refuse($"the destination {operand} here"),
    };

    private string Where() => $"line {_current.Line} ({_current})";

    /// <summary>A PTX register as a local of the compiled method; its slot is where it waits across a collective.</summary>
    private sealed record Register(string Name, Kind Kind, LocalBuilder Local, int Slot);

    /// <summary>A variable that lives in a window: the kernel's parameters, the thread's local or the block's shared memory.</summary>
    /// <remarks>A called function's own parameter or return value is <see cref="Argument"/> k of its method: a pointer to the caller's.</remarks>
    private readonly record struct WindowVariable(PtxStateSpace Space, ulong Offset, int Argument = 0, long Bytes = 0);
}

/// <summary>A kernel compiled by <see cref="KernelCompiler"/>, with what a launch needs to run it.</summary>
internal sealed record CompiledKernel(
    string Name,
    Func<LaneContext, int, int> Run,
    IReadOnlyDictionary<string, int> ParameterOffsets,
    int ParameterBytes,
    int RegisterCount,
    ulong StaticSharedBytes,
    ulong LocalBytes,
    CollectiveSite[] Collectives,
    string[] Sites,
    int CachedSites)
{
    /// <summary>The method that runs eight threads at once (<see cref="SimdCompiler"/>), where the kernel has one.</summary>
    public Func<LaneContext, int, int>? Vector { get; init; }

    /// <summary>For each collective, the registers live after it that the vector code keeps as scalars (uniform or affine).</summary>
    public ScalarAfter[][] VectorScalarsAfter { get; init; } = [];
}

/// <summary>
/// What every kernel of a module shares: its module-scope variables, global and constant ones by their index in the
/// launch's symbol table, shared ones by their offset in each block's shared window.
/// </summary>
internal sealed class ModuleLayout
{
    public ModuleLayout(PtxProgram program)
    {
        ulong shared = 0;
        foreach (var v in program.Variables)
        {
            switch (v.Space)
            {
                case PtxStateSpace.Global or PtxStateSpace.Const:
                    Globals[v.Name] = GlobalNames.Count;
                    GlobalNames.Add(v.Name);
                    break;
                case PtxStateSpace.Shared when v.Dims is { } dims && dims.Contains(0):
                    DynamicShared.Add(v.Name);
                    break;
                case PtxStateSpace.Shared:
                    shared = KernelCompiler.Align(shared, (ulong)Math.Max(v.Align, v.ElementBytes));
                    SharedVariables[v.Name] = shared;
                    shared += (ulong)v.Bytes;
                    break;
            }
        }

        StaticSharedBytes = shared;
        foreach (var f in program.Functions)
        {
            // A declaration and its definition may both appear: the definition wins.
            if (f.Body is not null || !Functions.ContainsKey(f.Name))
            {
                Functions[f.Name] = f;
            }
        }
    }

    public Dictionary<string, int> Globals { get; } = new(StringComparer.Ordinal);

    /// <summary>The module's functions, kernels and .funcs, by name (an extern .func such as vprintf without a body).</summary>
    public Dictionary<string, PtxFunction> Functions { get; } = new(StringComparer.Ordinal);

    public List<string> GlobalNames { get; } = [];

    public Dictionary<string, ulong> SharedVariables { get; } = new(StringComparer.Ordinal);

    /// <summary>The unsized <c>.extern .shared</c> arrays: all at the start of the launch's dynamic shared memory.</summary>
    public HashSet<string> DynamicShared { get; } = new(StringComparer.Ordinal);

    public ulong StaticSharedBytes { get; }
}
