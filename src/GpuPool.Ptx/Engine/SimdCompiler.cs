using System.Globalization;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.Intrinsics;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Compiles a kernel a second time, to run eight consecutive threads of a block at once, each PTX register a vector of
/// their eight values (<see cref="Simd"/>): the approach of POCL's and CuPBoP's work-group vectorisation, for the code
/// where the eight go the same way. A guarded instruction whose predicate differs between them is where they diverge:
/// the code hands their registers to their scalar slots and each goes on alone in the scalar method, from an entry the
/// scalar compiler made before that instruction. A kernel with anything this compiler does not vectorise (an
/// instruction, a type, local memory, a call, a collective other than bar.sync) gets no vector method at all.
/// </summary>
/// <remarks>
/// The method is <c>int Run(LaneContext group, int resume)</c>, resume 0 at the start and k+1 after collective k, as
/// the scalar one; it returns <see cref="KernelCompiler.Exited"/>, <see cref="KernelCompiler.Stopped"/>, a collective's
/// number (the registers live there spilled to each thread's slots), or <see cref="KernelCompiler.Left"/> when the
/// threads diverged (each thread's resume then set to its scalar entry).
/// </remarks>
internal sealed class SimdCompiler
{
    private readonly PtxFunction _kernel;
    private readonly ModuleLayout _module;
    private readonly Liveness _liveness;
    private readonly int _registerCount;
    private readonly IReadOnlyDictionary<string, (PtxStateSpace Space, ulong Offset)> _windows;
    private readonly int _parameterBytes;
    private readonly IReadOnlyDictionary<PtxInstruction, int> _entries;
    private readonly CompileUnit _unit;
    private readonly DynamicMethod _method;
    private readonly ILGenerator _il;
    private readonly List<Dictionary<string, Slot>> _scopes = [];
    private readonly List<Slot> _slots = [];
    private readonly Dictionary<string, Label> _labels = new(StringComparer.Ordinal);
    private readonly HashSet<string> _marked = new(StringComparer.Ordinal);
    private readonly List<(Label After, PtxInstruction At)> _collectives = [];
    private readonly Label _stop;
    private readonly HashSet<string> _varying;

    /// <summary>
    /// For a kernel without barriers: the group that ends goes on to the next of its block here, in the method, rather
    /// than return to the runner for each (the loop of POCL's work-group functions).
    /// </summary>
    private readonly bool _loop;
    private readonly Label _next;

    /// <summary>
    /// For a kernel with barriers: where a group that reached a barrier, exited or diverged goes on to the next group of
    /// the block that runs as a vector this round (<see cref="Simd.NextVectorGroup"/>).
    /// </summary>
    private readonly Label _nextInRound;
    private readonly Label _dispatch;

    /// <summary>The instructions the block's prologue runs once for all its groups, in the body's order (<see cref="Hoisted"/>).</summary>
    private readonly List<PtxInstruction> _hoisted;
    private readonly HashSet<PtxInstruction> _hoistedSet;
    private PtxInstruction _current = null!;

    private SimdCompiler(
        ModuleLayout module,
        PtxFunction kernel,
        Liveness liveness,
        int registerCount,
        IReadOnlyDictionary<string, (PtxStateSpace, ulong)> windows,
        int parameterBytes,
        IReadOnlyDictionary<PtxInstruction, int> entries,
        CompileUnit unit)
    {
        _module = module;
        _kernel = kernel;
        _liveness = liveness;
        _registerCount = registerCount;
        _windows = windows;
        _parameterBytes = parameterBytes;
        _entries = entries;
        _unit = unit;
        _method = new DynamicMethod("ptx_simd_" + kernel.Name, typeof(int), [typeof(LaneContext), typeof(int)], typeof(LaneContext).Module, skipVisibility: true);
        _method.InitLocals = false;
        _il = _method.GetILGenerator();
        _stop = _il.DefineLabel();
        _varying = Varying(kernel.Body!);
        _loop = !Opcodes(kernel.Body!).Any(o => o is "bar" or "barrier");
        _hoisted = _loop ? Hoisted(kernel.Body!) : [];
        _hoistedSet = new HashSet<PtxInstruction>(_hoisted, ReferenceEqualityComparer.Instance);
        _next = _il.DefineLabel();
        _nextInRound = _il.DefineLabel();
        _dispatch = _il.DefineLabel();
    }

    /// <summary>
    /// The registers whose eight values may differ (by name: a name declared in two scopes counts as one, which can only
    /// add to the set). The rest are uniform: written only from uniform operands — immediates, parameters, module
    /// addresses, the block's ids and sizes, %tid.y and %tid.z (the vector code runs only where a group shares them) —
    /// by instructions that give equal results for equal operands, so a load through one is one load for all eight.
    /// Guards need no care: in the vector code a guard is uniform, or the threads have left it.
    /// </summary>
    private static HashSet<string> Varying(IReadOnlyList<PtxStatement> body)
    {
        var instructions = new List<PtxInstruction>();
        void Collect(IReadOnlyList<PtxStatement> statements)
        {
            foreach (var statement in statements)
            {
                if (statement is PtxInstruction i)
                {
                    instructions.Add(i);
                }
                else if (statement is PtxBlock b)
                {
                    Collect(b.Body);
                }
            }
        }

        Collect(body);
        var varying = new HashSet<string>(StringComparer.Ordinal);
        bool Varies(PtxOperand operand) => operand switch
        {
            PtxRegister r => varying.Contains(r.Name) || r.Name is "%tid.x" or "%laneid" or "%clock" or "%clock64" or "%globaltimer",
            PtxAddress { Base: { } b } => Varies(b),
            PtxNot n => Varies(n.Operand),
            PtxVector v => v.Elements.Any(Varies),
            _ => false,
        };

        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var i in instructions)
            {
                if (i.Operands.Count == 0 || i.Opcode is "st" or "bra" or "ret" or "exit" or "bar" or "barrier" || i.Operands[0] is not PtxRegister d)
                {
                    continue;
                }

                if (!varying.Contains(d.Name) && (i.Operands.Skip(1).Any(Varies) || i.Opcode is not ("mov" or "ld" or "add" or "sub" or "mul" or "mad" or "fma" or "div"
                    or "sqrt" or "neg" or "abs" or "not" or "min" or "max" or "shl" or "shr" or "and" or "or" or "xor" or "setp" or "selp" or "cvta" or "cvt")))
                {
                    varying.Add(d.Name);
                    changed = true;
                }
            }
        }

        return varying;
    }

    /// <summary>
    /// For a kernel without barriers, whose groups loop in the method: the top-level instructions that give every group
    /// of a block the same value, which the method then computes once for the block (loop-invariant code motion over
    /// the group loop) — an unguarded, pure instruction that cannot fault (arithmetic other than division, mov, cvt,
    /// cvta, ld.param), whose operands are constants, the block's ids and sizes (never %tid, %laneid or a clock) or
    /// registers so computed, and whose destination is written nowhere else in the kernel, so that the value it leaves
    /// holds wherever the body reads it. Only the group loop skips the prologue: every entry at resume 0 runs it.
    /// </summary>
    private static List<PtxInstruction> Hoisted(IReadOnlyList<PtxStatement> body)
    {
        var writes = new Dictionary<string, int>(StringComparer.Ordinal);
        void Count(IReadOnlyList<PtxStatement> statements)
        {
            foreach (var statement in statements)
            {
                if (statement is PtxInstruction { Operands.Count: > 0 } i && i.Opcode is not ("st" or "bra" or "ret" or "exit" or "red" or "prefetch"))
                {
                    foreach (var name in Destinations(i.Operands[0]))
                    {
                        writes[name] = writes.GetValueOrDefault(name) + 1;
                    }
                }
                else if (statement is PtxBlock b)
                {
                    Count(b.Body);
                }
            }
        }

        Count(body);
        var invariant = new HashSet<string>(StringComparer.Ordinal);
        bool Invariant(PtxOperand operand) => operand switch
        {
            PtxInteger or PtxFloat or PtxSymbol => true,
            PtxRegister r => invariant.Contains(r.Name) || r.Name is "%ctaid.x" or "%ctaid.y" or "%ctaid.z" or "%nctaid.x" or "%nctaid.y"
                or "%nctaid.z" or "%ntid.x" or "%ntid.y" or "%ntid.z",
            _ => false,
        };

        var hoisted = new List<PtxInstruction>();
        foreach (var i in body.OfType<PtxInstruction>())
        {
            var pure = i.Opcode is "mov" or "add" or "sub" or "mul" or "mad" or "shl" or "shr" or "and" or "or" or "xor" or "not" or "neg"
                or "min" or "max" or "cvt" or "cvta" || (i.Opcode == "ld" && i.Has("param") && i.Operands is [_, PtxAddress { Base: PtxSymbol }]);
            if (pure && i.Guard is null && !i.Has("cc") && i.Operands.Count >= 2 && i.Operands[0] is PtxRegister d
                && writes.GetValueOrDefault(d.Name) == 1 && (i.Opcode == "ld" || i.Operands.Skip(1).All(Invariant)))
            {
                hoisted.Add(i);
                invariant.Add(d.Name);
            }
        }

        return hoisted;
    }

    private static IEnumerable<string> Destinations(PtxOperand operand) => operand switch
    {
        PtxRegister r => [r.Name],
        PtxVector v => v.Elements.SelectMany(Destinations),
        _ => ["?"],
    };

    /// <summary>Whether the scalar compiler should make entries for this kernel's vector code: a cheap look at its opcodes.</summary>
    public static bool Worth(PtxFunction kernel) => kernel.Body is { } body && Opcodes(body).All(o => o is "mov" or "ld" or "st" or "add" or "sub" or "mul"
        or "mad" or "fma" or "div" or "sqrt" or "neg" or "abs" or "not" or "min" or "max" or "shl" or "shr" or "and" or "or" or "xor" or "setp"
        or "selp" or "cvta" or "cvt" or "bra" or "ret" or "exit" or "bar" or "barrier");

    private static IEnumerable<string> Opcodes(IReadOnlyList<PtxStatement> body)
        => body.SelectMany(s => s switch
        {
            PtxInstruction i => [i.Opcode],
            PtxBlock b => Opcodes(b.Body),
            PtxVariableDeclaration { Variable.Space: not PtxStateSpace.Shared } => ["a local variable"],
            _ => [],
        });

    /// <summary>
    /// The vector method, or null where the kernel has something this compiler does not vectorise; with it, for each
    /// collective, the registers live after it that the method takes as uniform.
    /// </summary>
    public static (Func<LaneContext, int, int> Run, int[][] UniformAfter)? TryCompile(
        ModuleLayout module,
        PtxFunction kernel,
        Liveness liveness,
        int registerCount,
        IReadOnlyDictionary<string, (PtxStateSpace, ulong)> windows,
        int parameterBytes,
        IReadOnlyDictionary<PtxInstruction, int> entries,
        CompileUnit unit)
    {
        var sites = unit.Sites.Count;
        var cached = unit.CachedSites;
        try
        {
            return new SimdCompiler(module, kernel, liveness, registerCount, windows, parameterBytes, entries, unit).Build();
        }
        catch (NotVectorised)
        {
            unit.Sites.RemoveRange(sites, unit.Sites.Count - sites);
            unit.CachedSites = cached;
            return null;
        }
    }

    private (Func<LaneContext, int, int>, int[][]) Build()
    {
        _scopes.Add(new(StringComparer.Ordinal));

        // The carry flag's slot, which this code never uses (an instruction with a carry is not vectorised).
        _slots.Add(new Slot(Kind.I32, null));
        var dispatch = _dispatch;
        var start = _il.DefineLabel();
        var prologue = _il.DefineLabel();
        var body = _il.DefineLabel();
        _il.Emit(OpCodes.Br, dispatch);
        _il.MarkLabel(start);
        _il.Emit(OpCodes.Br, prologue);
        _il.MarkLabel(body);
        EmitBody(_kernel.Body!);
        EmitExit();

        // What every group of the block computes alike, computed once for the block (see Hoisted); the code of those
        // instructions is here, after the body, where every top-level register has its slot.
        _il.MarkLabel(prologue);
        foreach (var i in _hoisted)
        {
            _current = i;
            EmitInstruction(i);
        }

        _il.Emit(OpCodes.Br, body);
        if (_loop)
        {
            // The next group of eight, if the block has one: its ids, then the kernel from its start (past the
            // prologue, whose registers hold the same values for it).
            _il.MarkLabel(_next);
            _il.Emit(OpCodes.Ldarg_0);
            Call(nameof(Simd.NextGroup));
            _il.Emit(OpCodes.Brtrue, body);
            _il.Emit(OpCodes.Ldc_I4, KernelCompiler.Exited);
            _il.Emit(OpCodes.Ret);
        }
        else
        {
            // The next group this round, from its own resume point; none: back to the block runner.
            var done = _il.DefineLabel();
            _il.MarkLabel(_nextInRound);
            _il.Emit(OpCodes.Ldarg_0);
            Call(nameof(Simd.NextVectorGroup));
            _il.Emit(OpCodes.Dup);
            _il.Emit(OpCodes.Ldc_I4_M1);
            _il.Emit(OpCodes.Beq, done);
            _il.Emit(OpCodes.Starg_S, (byte)1);
            _il.Emit(OpCodes.Br, _dispatch);
            _il.MarkLabel(done);
            _il.Emit(OpCodes.Pop);
            _il.Emit(OpCodes.Ldc_I4, KernelCompiler.Exited);
            _il.Emit(OpCodes.Ret);
        }

        _il.MarkLabel(_stop);
        _il.Emit(OpCodes.Ldc_I4, KernelCompiler.Stopped);
        _il.Emit(OpCodes.Ret);
        if (_slots.Count != _registerCount)
        {
            throw new NotVectorised();
        }

        // Resume k+1: after collective k from the vector slots; 1+K+k: from each thread's scalar slots, for a group that
        // diverged before and whose threads meet again at that barrier.
        var stubs = new Label[2 * _collectives.Count];
        for (var k = 0; k < stubs.Length; k++)
        {
            var (after, at) = _collectives[k % _collectives.Count];
            stubs[k] = _il.DefineLabel();
            _il.MarkLabel(stubs[k]);
            foreach (var r in _liveness.LiveOut(at))
            {
                Reload(r, fromVector: k < _collectives.Count);
            }

            _il.Emit(OpCodes.Br, after);
        }

        _il.MarkLabel(dispatch);
        _il.Emit(OpCodes.Ldarg_1);
        _il.Emit(OpCodes.Switch, [start, .. stubs]);
        _il.Emit(OpCodes.Br, start);
        var uniformAfter = _collectives.Select(c => _liveness.LiveOut(c.At).Where(r => _slots[r].Name is { } n && !_varying.Contains(n)).ToArray()).ToArray();
        return (_method.CreateDelegate<Func<LaneContext, int, int>>(), uniformAfter);
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
                case PtxLabel l:
                    _il.MarkLabel(LabelOf(l.Name));
                    _marked.Add(l.Name);
                    break;
                case PtxBlock b:
                    _scopes.Add(new(StringComparer.Ordinal));
                    EmitBody(b.Body);
                    _scopes.RemoveAt(_scopes.Count - 1);
                    break;
                case PtxInstruction i when _hoistedSet.Contains(i):
                    break;
                case PtxInstruction i:
                    _current = i;
                    EmitGuarded(i);
                    break;
                default:
                    throw new NotVectorised();
            }
        }
    }

    private void Declare(PtxRegisterDeclaration declaration)
    {
        var kind = declaration.VectorWidth != 1 ? throw new NotVectorised() : declaration.Type switch
        {
            "pred" or "b32" or "u32" or "s32" => Kind.I32,
            "f32" => Kind.F32,
            "b64" or "u64" or "s64" => Kind.I64,
            _ => throw new NotVectorised(),
        };
        var names = declaration.Count == 0
            ? [declaration.Name]
            : Enumerable.Range(0, declaration.Count).Select(i => declaration.Name + i.ToString(CultureInfo.InvariantCulture));
        foreach (var name in names)
        {
            var slot = new Slot(kind, _il.DeclareLocal(VectorType(kind)), name);
            _slots.Add(slot);
            _scopes[^1][name] = slot;
        }
    }

    private static Type VectorType(Kind kind) => kind switch
    {
        Kind.I32 => typeof(Vector256<int>),
        Kind.F32 => typeof(Vector256<float>),
        Kind.I64 => typeof(Vec8L),
        _ => throw new NotVectorised(),
    };

    // ---- control --------------------------------------------------------------------------------------------

    private void EmitGuarded(PtxInstruction i)
    {
        if (i.Guard is null)
        {
            EmitInstruction(i);
            return;
        }

        // All eight agree: run it (or not) for all; else they diverge here, each to go on alone.
        var skip = _il.DefineLabel();
        var run = _il.DefineLabel();
        var diverge = _il.DefineLabel();
        LoadSlot(Find(i.Guard.Predicate), Kind.I32);
        Call(nameof(Simd.Uniform));
        _il.Emit(OpCodes.Switch, i.Guard.Negated ? [run, skip] : [skip, run]);
        _il.Emit(OpCodes.Br, diverge);
        _il.MarkLabel(diverge);
        if (!_entries.TryGetValue(i, out var entry))
        {
            throw new NotVectorised();
        }

        foreach (var r in _liveness.LiveIn(i))
        {
            Spill(r);
        }

        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, entry);
        Call(nameof(Simd.Leave));
        if (_loop)
        {
            _il.Emit(OpCodes.Ret);
        }
        else
        {
            _il.Emit(OpCodes.Pop);
            _il.Emit(OpCodes.Br, _nextInRound);
        }
        _il.MarkLabel(run);
        EmitInstruction(i);
        _il.MarkLabel(skip);
    }

    private void EmitInstruction(PtxInstruction i)
    {
        switch (i.Opcode)
        {
            case "bra":
                var target = i.Operands[0] is PtxSymbol { Offset: 0 } s ? s.Name : throw new NotVectorised();
                if (_marked.Contains(target))
                {
                    _il.Emit(OpCodes.Ldarg_0);
                    _il.Emit(OpCodes.Ldfld, typeof(LaneContext).GetField(nameof(LaneContext.Control))!);
                    _il.Emit(OpCodes.Volatile);
                    _il.Emit(OpCodes.Ldfld, typeof(LaunchControl).GetField(nameof(LaunchControl.Stop))!);
                    _il.Emit(OpCodes.Brtrue, _stop);
                }

                _il.Emit(OpCodes.Br, LabelOf(target));
                return;
            case "ret" or "exit":
                EmitExit();
                return;
            case "bar" or "barrier" when i.Operands is [PtxInteger { Value: 0 }] && i.Modifiers.All(m => m is "sync" or "aligned"):
                foreach (var r in _liveness.LiveIn(i))
                {
                    Spill(r, toVector: true);
                }

                var after = _il.DefineLabel();
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldc_I4, _collectives.Count);
                Call(nameof(Simd.Arrive));
                _il.Emit(OpCodes.Br, _nextInRound);
                _il.MarkLabel(after);
                _collectives.Add((after, i));
                return;
            case "mov" when i.Operands.Count == 2:
                var kind = KindOf(Type(i));
                Load(i.Operands[1], kind);
                Store(i.Operands[0], kind);
                return;
            case "ld":
                EmitLoad(i);
                return;
            case "st":
                EmitStore(i);
                return;
            case "cvta" when i.Has("u64") && i.Has("global") && i.Operands.Count == 2:
                Load(i.Operands[1], Kind.I64);
                Store(i.Operands[0], Kind.I64);
                return;
            case "cvt":
                EmitCvt(i);
                return;
            case "setp" when i.Operands.Count == 3 && i.Operands[0] is PtxRegister:
                EmitSetp(i);
                return;
            case "selp" when i.Operands.Count == 4:
                var selected = KindOf(Type(i));
                Load(i.Operands[1], selected);
                Load(i.Operands[2], selected);
                Load(i.Operands[3], Kind.I32);
                Call(selected == Kind.F32 ? nameof(Simd.SelpF32) : nameof(Simd.SelpI32));
                Store(i.Operands[0], selected);
                return;
            default:
                EmitArithmetic(i);
                return;
        }
    }

    /// <summary>The eight threads end: the method returns, or goes on with the block's next group.</summary>
    private void EmitExit()
    {
        if (_loop)
        {
            _il.Emit(OpCodes.Br, _next);
            return;
        }

        _il.Emit(OpCodes.Ldarg_0);
        Call(nameof(Simd.ExitGroup));
        _il.Emit(OpCodes.Br, _nextInRound);
    }

    // ---- arithmetic -----------------------------------------------------------------------------------------

    private void EmitArithmetic(PtxInstruction i)
    {
        var type = Type(i);
        var modifiers = i.Modifiers.Where(m => m != type).ToArray();
        var helper = (i.Opcode, type, string.Join('.', modifiers)) switch
        {
            ("add", "s32" or "u32" or "b32", "") => nameof(Simd.AddI32),
            ("sub", "s32" or "u32" or "b32", "") => nameof(Simd.SubI32),
            ("mul", "s32" or "u32", "lo") => nameof(Simd.MulI32),
            ("mad", "s32" or "u32", "lo") => nameof(Simd.MadI32),
            ("mul", "s32", "wide") => nameof(Simd.MulWideS32),
            ("mul", "u32", "wide") => nameof(Simd.MulWideU32),
            ("and", "b32" or "pred", "") => nameof(Simd.AndI32),
            ("or", "b32" or "pred", "") => nameof(Simd.OrI32),
            ("xor", "b32" or "pred", "") => nameof(Simd.XorI32),
            ("add", "s64" or "u64" or "b64", "") => nameof(Simd.AddI64),
            ("sub", "s64" or "u64" or "b64", "") => nameof(Simd.SubI64),
            ("add", "f32", "" or "rn") => nameof(Simd.AddF32),
            ("sub", "f32", "" or "rn") => nameof(Simd.SubF32),
            ("mul", "f32", "" or "rn") => nameof(Simd.MulF32),
            ("fma" or "mad", "f32", "rn") => nameof(Simd.FmaF32),
            ("div", "f32", "rn") => nameof(Simd.DivF32),
            ("sqrt", "f32", "rn") => nameof(Simd.SqrtF32),
            ("neg", "f32", "") => nameof(Simd.NegF32),
            ("abs", "f32", "") => nameof(Simd.AbsF32),
            ("min", "f32", "") => nameof(Simd.MinF32),
            ("max", "f32", "") => nameof(Simd.MaxF32),
            ("min", "s32", "") => nameof(Simd.MinS32),
            ("max", "s32", "") => nameof(Simd.MaxS32),
            ("min", "u32", "") => nameof(Simd.MinU32),
            ("max", "u32", "") => nameof(Simd.MaxU32),
            ("neg", "s32", "") => nameof(Simd.NegS32),
            ("abs", "s32", "") => nameof(Simd.AbsS32),
            ("not", "b32", "") => nameof(Simd.NotI32),
            ("not", "pred", "") => nameof(Simd.NotPred),
            ("shl", "b32", "") => nameof(Simd.ShlI32),
            ("shr", "b32" or "u32", "") => nameof(Simd.ShrU32),
            ("shr", "s32", "") => nameof(Simd.ShrS32),
            ("shl", "b64", "") => nameof(Simd.ShlI64),
            _ => throw new NotVectorised(),
        };
        var kind = KindOf(type);
        var sources = i.Operands.Skip(1).ToArray();
        if (i.Opcode is "shl" or "shr")
        {
            // A shift by a constant under the width: one vector shift.
            if (sources is not [_, PtxInteger { Value: >= 0 } count] || count.Value >= (kind == Kind.I64 ? 64 : 32))
            {
                throw new NotVectorised();
            }

            Load(sources[0], kind);
            _il.Emit(OpCodes.Ldc_I4, (int)count.Value);
        }
        else
        {
            if (sources.Length != (i.Opcode switch { "mad" or "fma" => 3, "sqrt" or "neg" or "abs" or "not" => 1, _ => 2 }))
            {
                throw new NotVectorised();
            }

            foreach (var s in sources)
            {
                Load(s, kind);
            }
        }

        Call(helper);
        Store(i.Operands[0], i.Has("wide") ? Kind.I64 : kind);
    }

    private void EmitSetp(PtxInstruction i)
    {
        var type = Type(i);
        var comparisons = new[] { "lt", "le", "gt", "ge", "eq", "ne" };
        var rest = i.Modifiers.Where(m => m != type).ToArray();
        if (rest.Length != 1 || Array.IndexOf(comparisons, rest[0]) is var op && op < 0)
        {
            throw new NotVectorised();
        }

        var (helper, kind) = type switch
        {
            "s32" => (nameof(Simd.SetpS32), Kind.I32),
            "u32" or "b32" when type == "u32" || op >= 4 => (nameof(Simd.SetpU32), Kind.I32),
            "f32" => (nameof(Simd.SetpF32), Kind.F32),
            _ => throw new NotVectorised(),
        };
        Load(i.Operands[1], kind);
        Load(i.Operands[2], kind);
        _il.Emit(OpCodes.Ldc_I4, op);
        Call(helper);
        Store(i.Operands[0], Kind.I32);
    }

    private void EmitCvt(PtxInstruction i)
    {
        var (helper, from, to) = string.Join('.', i.Modifiers) switch
        {
            "u64.u32" => (nameof(Simd.WidenU32), Kind.I32, Kind.I64),
            "s64.s32" => (nameof(Simd.WidenS32), Kind.I32, Kind.I64),
            "u32.u64" or "s32.s64" or "u32.s64" or "s32.u64" => (nameof(Simd.NarrowI64), Kind.I64, Kind.I32),
            "rn.f32.s32" => (nameof(Simd.S32ToF32), Kind.I32, Kind.F32),
            _ => throw new NotVectorised(),
        };
        Load(i.Operands[1], from);
        Call(helper);
        Store(i.Operands[0], to);
    }

    // ---- memory ---------------------------------------------------------------------------------------------

    private void EmitLoad(PtxInstruction i)
    {
        var (space, type) = Access(i);
        var kind = KindOf(type);
        if (space == "param")
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, ParamOffset(i.Operands[1], PtxTypes.SizeOf(type)));
            Call(kind == Kind.I64 ? nameof(Simd.LoadParam64) : nameof(Simd.LoadParam32));
            Store(i.Operands[0], kind == Kind.F32 ? Kind.I32 : kind, reinterpretAs: kind);
            return;
        }

        if (kind == Kind.I64)
        {
            throw new NotVectorised();
        }

        EmitAddressed(i.Operands[1], space, load: true);
        Store(i.Operands[0], Kind.I32, reinterpretAs: kind);
    }

    private void EmitStore(PtxInstruction i)
    {
        var (space, type) = Access(i);
        var kind = KindOf(type);
        if (space == "param" || kind == Kind.I64)
        {
            throw new NotVectorised();
        }

        EmitAddressed(i.Operands[0], space, load: false, value: i.Operands[1], kind: kind);
    }

    /// <summary>A 4-byte access of eight threads: pushes what it loads, or stores <paramref name="value"/>.</summary>
    private void EmitAddressed(PtxOperand operand, string space, bool load, PtxOperand? value = null, Kind kind = Kind.I32)
    {
        if (operand is not PtxAddress address)
        {
            throw new NotVectorised();
        }

        var site = _unit.Sites.Count;
        _unit.Sites.Add($"line {_current.Line} ({_current})");
        _il.Emit(OpCodes.Ldarg_0);
        if (space == "shared")
        {
            var uniform = true;
            switch (address.Base)
            {
                case PtxRegister r when Find(r.Name).Kind == Kind.I32:
                    LoadSlot(Find(r.Name), Kind.I32);
                    uniform = !_varying.Contains(r.Name);
                    break;
                case PtxSymbol s when _windows.TryGetValue(s.Name, out var w) && w.Space == PtxStateSpace.Shared:
                    _il.Emit(OpCodes.Ldc_I4, checked((int)((long)w.Offset + s.Offset)));
                    Call(nameof(Simd.BroadcastI32));
                    break;
                default:
                    throw new NotVectorised();
            }

            if (address.Offset != 0)
            {
                _il.Emit(OpCodes.Ldc_I4, checked((int)address.Offset));
                Call(nameof(Simd.BroadcastI32));
                Call(nameof(Simd.AddI32));
            }

            if (!load)
            {
                LoadBits(value!, kind);
            }

            _il.Emit(OpCodes.Ldc_I4, site);
            Call(load ? uniform ? nameof(Simd.LoadShared32Uniform) : nameof(Simd.LoadShared32) : nameof(Simd.StoreShared32));
            return;
        }

        if (address.Base is not PtxRegister b || Find(b.Name).Kind != Kind.I64)
        {
            throw new NotVectorised();
        }

        LoadSlot(Find(b.Name), Kind.I64);
        if (address.Offset != 0)
        {
            _il.Emit(OpCodes.Ldc_I8, address.Offset);
            Call(nameof(Simd.BroadcastI64));
            Call(nameof(Simd.AddI64));
        }

        if (!load)
        {
            LoadBits(value!, kind);
        }

        var slot = 2 * _unit.CachedSites++;
        _il.Emit(OpCodes.Ldc_I4, site);
        _il.Emit(OpCodes.Ldc_I4, slot);
        _il.Emit(space == "global" ? OpCodes.Ldc_I4_0 : OpCodes.Ldc_I4_1);
        Call(load ? _varying.Contains(b.Name) ? nameof(Simd.LoadGlobal32) : nameof(Simd.LoadGlobal32Uniform) : nameof(Simd.StoreGlobal32));
    }

    /// <summary>The state space (global, shared, param or generic) and the type of a plain 4- or 8-byte ld/st.</summary>
    private (string Space, string Type) Access(PtxInstruction i)
    {
        var type = Type(i);
        var space = "generic";
        foreach (var m in i.Modifiers.Where(m => m != type))
        {
            switch (m)
            {
                case "global" or "shared" or "param":
                    space = m;
                    break;
                case "nc" or "ca" or "cg" or "cs" or "lu" or "cv" or "wb" or "wt":
                    break;
                default:
                    throw new NotVectorised();
            }
        }

        if (type is not ("b32" or "u32" or "s32" or "f32" or "b64" or "u64" or "s64") || i.Operands.Count != 2)
        {
            throw new NotVectorised();
        }

        return (space, type);
    }

    /// <summary>A kernel parameter at a constant offset: its offset, checked against the parameters here, once.</summary>
    private int ParamOffset(PtxOperand operand, int size)
    {
        if (operand is PtxAddress { Base: PtxSymbol s } a && _windows.TryGetValue(s.Name, out var w) && w.Space == PtxStateSpace.Param)
        {
            var offset = (long)w.Offset + s.Offset + a.Offset;
            if (offset >= 0 && offset + size <= _parameterBytes)
            {
                return (int)offset;
            }
        }

        throw new NotVectorised();
    }

    // ---- operands -------------------------------------------------------------------------------------------

    private static string Type(PtxInstruction i)
        => i.Modifiers.LastOrDefault(m => m is "pred" or "b32" or "u32" or "s32" or "f32" or "b64" or "u64" or "s64") ?? throw new NotVectorised();

    private static Kind KindOf(string type) => type switch
    {
        "pred" or "b32" or "u32" or "s32" => Kind.I32,
        "f32" => Kind.F32,
        "b64" or "u64" or "s64" => Kind.I64,
        _ => throw new NotVectorised(),
    };

    /// <summary>Pushes <paramref name="operand"/> as a vector of <paramref name="kind"/>.</summary>
    private void Load(PtxOperand operand, Kind kind)
    {
        switch (operand)
        {
            case PtxRegister r when FindOrNull(r.Name) is { } slot:
                LoadSlot(slot, kind);
                return;
            case PtxRegister r:
                LoadSpecial(r.Name, kind);
                return;
            case PtxNot { Operand: PtxRegister p } when kind == Kind.I32:
                LoadSlot(Find(p.Name), Kind.I32);
                Call(nameof(Simd.NotPred));
                return;
            case PtxInteger n:
                Constant(kind, n.Value, n.Value);
                return;
            case PtxFloat f:
                Constant(kind, f.Single ? BitConverter.SingleToInt32Bits((float)f.Value) : BitConverter.DoubleToInt64Bits(f.Value), f.Value);
                return;
            case PtxSymbol s when _windows.TryGetValue(s.Name, out var w) && w.Space == PtxStateSpace.Shared:
                Constant(kind, (long)w.Offset + s.Offset, double.NaN);
                return;
            case PtxSymbol s when _module.Globals.TryGetValue(s.Name, out var index) && kind == Kind.I64:
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, typeof(LaneContext).GetField(nameof(LaneContext.Symbols))!);
                _il.Emit(OpCodes.Ldc_I4, index);
                _il.Emit(OpCodes.Ldelem_I8);
                if (s.Offset != 0)
                {
                    _il.Emit(OpCodes.Ldc_I8, s.Offset);
                    _il.Emit(OpCodes.Add);
                }

                Call(nameof(Simd.BroadcastI64));
                return;
            default:
                throw new NotVectorised();
        }
    }

    /// <summary>An immediate: integer bits for integer kinds, its value for f32 (an integer immediate of an f32 op is its value).</summary>
    private void Constant(Kind kind, long bits, double value)
    {
        switch (kind)
        {
            case Kind.I32:
                _il.Emit(OpCodes.Ldc_I4, unchecked((int)bits));
                Call(nameof(Simd.BroadcastI32));
                break;
            case Kind.I64:
                _il.Emit(OpCodes.Ldc_I8, bits);
                Call(nameof(Simd.BroadcastI64));
                break;
            case Kind.F32 when !double.IsNaN(value):
                _il.Emit(OpCodes.Ldc_R4, (float)value);
                Call(nameof(Simd.BroadcastF32));
                break;
            default:
                throw new NotVectorised();
        }
    }

    private void LoadSpecial(string name, Kind kind)
    {
        if (kind != Kind.I32)
        {
            throw new NotVectorised();
        }

        var vector = name switch
        {
            "%tid.x" => nameof(LaneContext.VTidX),
            "%tid.y" => nameof(LaneContext.VTidY),
            "%tid.z" => nameof(LaneContext.VTidZ),
            "%laneid" => nameof(LaneContext.VLane),
            _ => null,
        };
        _il.Emit(OpCodes.Ldarg_0);
        if (vector is not null)
        {
            _il.Emit(OpCodes.Ldfld, typeof(LaneContext).GetField(vector)!);
            return;
        }

        var scalar = name switch
        {
            "%ntid.x" => nameof(LaneContext.NtidX),
            "%ntid.y" => nameof(LaneContext.NtidY),
            "%ntid.z" => nameof(LaneContext.NtidZ),
            "%ctaid.x" => nameof(LaneContext.CtaX),
            "%ctaid.y" => nameof(LaneContext.CtaY),
            "%ctaid.z" => nameof(LaneContext.CtaZ),
            "%nctaid.x" => nameof(LaneContext.NctaX),
            "%nctaid.y" => nameof(LaneContext.NctaY),
            "%nctaid.z" => nameof(LaneContext.NctaZ),
            _ => throw new NotVectorised(),
        };
        _il.Emit(OpCodes.Ldfld, typeof(LaneContext).GetField(scalar)!);
        Call(nameof(Simd.BroadcastI32));
    }

    /// <summary>Pushes a register as <paramref name="kind"/>: f32 and 32-bit integer registers reinterpret each other's bits.</summary>
    private void LoadSlot(Slot slot, Kind kind)
    {
        _il.Emit(OpCodes.Ldloc, slot.Local!);
        Reinterpret(slot.Kind, kind);
    }

    /// <summary>Pushes a stored value's bits as a vector of int32 (f32 reinterpreted).</summary>
    private void LoadBits(PtxOperand operand, Kind kind)
    {
        Load(operand, kind);
        if (kind == Kind.F32)
        {
            Call(nameof(Simd.F32Bits));
        }
    }

    private void Store(PtxOperand operand, Kind kind, Kind? reinterpretAs = null)
    {
        if (reinterpretAs is { } k && k != kind)
        {
            Reinterpret(kind, k);
            kind = k;
        }

        switch (operand)
        {
            case PtxSink:
                _il.Emit(OpCodes.Pop);
                return;
            case PtxRegister r:
                var slot = Find(r.Name);
                Reinterpret(kind, slot.Kind);
                _il.Emit(OpCodes.Stloc, slot.Local!);
                return;
            default:
                throw new NotVectorised();
        }
    }

    private void Reinterpret(Kind from, Kind to)
    {
        switch ((from, to))
        {
            case var same when same.from == same.to:
                return;
            case (Kind.I32, Kind.F32):
                Call(nameof(Simd.BitsF32));
                return;
            case (Kind.F32, Kind.I32):
                Call(nameof(Simd.F32Bits));
                return;
            default:
                throw new NotVectorised();
        }
    }

    private void Spill(int register, bool toVector = false)
    {
        var slot = _slots[register];
        if (slot.Local is null)
        {
            throw new NotVectorised();
        }

        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldloc, slot.Local);
        Reinterpret(slot.Kind, slot.Kind == Kind.I64 ? Kind.I64 : Kind.I32);
        _il.Emit(OpCodes.Ldc_I4, register);
        _il.Emit(OpCodes.Ldc_I4, _registerCount);
        Call((slot.Kind == Kind.I64, toVector) switch
        {
            (true, true) => nameof(Simd.StashI64),
            (false, true) => nameof(Simd.StashI32),
            (true, false) => nameof(Simd.SpillI64),
            _ => nameof(Simd.SpillI32),
        });
    }

    private void Reload(int register, bool fromVector)
    {
        var slot = _slots[register];
        if (slot.Local is null)
        {
            throw new NotVectorised();
        }

        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, register);
        _il.Emit(OpCodes.Ldc_I4, _registerCount);
        Call((slot.Kind == Kind.I64, fromVector) switch
        {
            (true, true) => nameof(Simd.UnstashI64),
            (false, true) => nameof(Simd.UnstashI32),
            (true, false) => nameof(Simd.ReloadI64),
            _ => nameof(Simd.ReloadI32),
        });
        Reinterpret(slot.Kind == Kind.I64 ? Kind.I64 : Kind.I32, slot.Kind);
        _il.Emit(OpCodes.Stloc, slot.Local);
    }

    private Slot Find(string name) => FindOrNull(name) ?? throw new NotVectorised();

    private Slot? FindOrNull(string name)
    {
        for (var s = _scopes.Count - 1; s >= 0; s--)
        {
            if (_scopes[s].TryGetValue(name, out var slot))
            {
                return slot;
            }
        }

        return null;
    }

    private Label LabelOf(string name)
    {
        if (!_labels.TryGetValue(name, out var label))
        {
            label = _il.DefineLabel();
            _labels[name] = label;
        }

        return label;
    }

    private void Call(string name) => _il.Emit(OpCodes.Call, typeof(Simd).GetMethod(name, BindingFlags.Public | BindingFlags.Static)!);

    private sealed record Slot(Kind Kind, LocalBuilder? Local, string? Name = null);

    /// <summary>Something this compiler does not vectorise: the kernel runs on its scalar method alone.</summary>
    private sealed class NotVectorised : Exception;
}
