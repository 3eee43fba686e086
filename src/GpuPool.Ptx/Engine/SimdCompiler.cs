using System.Globalization;
using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.Intrinsics;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Compiles a kernel a second time, to run eight consecutive threads of a block at once: the approach of POCL's and
/// CuPBoP's work-group vectorisation, for the code where the eight go the same way. Each register has a shape
/// (<see cref="ShapeAnalysis"/>): a varying one is a vector of the eight values (<see cref="Simd"/>); a uniform or affine
/// one (the same value in all eight, or the first lane's plus a constant step per lane, as an index from %tid.x is) is one
/// scalar, its first lane's value, so the address arithmetic of most kernels is scalar, and an access whose address steps
/// by its size from lane to lane is one bounds check and one vector access. A guarded instruction whose predicate differs
/// between the eight is where they diverge, and an access that the fast check does not pass (its allocation not the one
/// its site last hit, misaligned, out of bounds, lanes whose 32-bit index wraps) is where they leave: the code hands
/// their registers to their scalar slots and each goes on alone in the scalar method, from an entry the scalar compiler
/// made before that instruction (<see cref="MayLeave"/>), which checks and faults as it always does. A kernel with
/// anything this compiler does not vectorise (an instruction, a type, local memory, a call, a collective other than
/// bar.sync) gets no vector method at all.
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
    private readonly Dictionary<string, Shape> _shapes;

    /// <summary>Where the eight leave the vector code before an instruction (out of the hot path, at the method's end).</summary>
    private readonly List<(Label Stub, PtxInstruction At, int Refill)> _leaves = [];

    /// <summary>
    /// The accesses checked since the last label, by base register, offset, window (shared or not) and bytes: code that
    /// goes on past a check passed it (a failed one leaves), so another access there needs none until the register is
    /// written again.
    /// </summary>
    private readonly HashSet<(string Base, long Offset, bool Shared, int Bytes)> _checked = [];
    private IReadOnlyList<PtxStatement> _block = [];
    private int _at;
    private LocalBuilder? _address64;
    private LocalBuilder? _address32;
    private LocalBuilder? _groupSlots;

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
        _shapes = ShapeAnalysis.Analyze(kernel.Body!);
        _loop = !Opcodes(kernel.Body!).Any(o => o is "bar" or "barrier");
        _hoisted = _loop ? Hoisted(kernel.Body!) : [];
        _hoistedSet = new HashSet<PtxInstruction>(_hoisted, ReferenceEqualityComparer.Instance);
        _next = _il.DefineLabel();
        _nextInRound = _il.DefineLabel();
        _dispatch = _il.DefineLabel();
    }

    /// <summary>
    /// Whether the vector code may leave its threads to the scalar code before <paramref name="i"/>, so the scalar
    /// compiler makes an entry there: a guarded instruction (where they may diverge), a memory access (where a fast
    /// check may fail) and a widening of a 32-bit index (where its lanes may wrap).
    /// </summary>
    public static bool MayLeave(PtxInstruction i)
        => i.Guard is not null || (i.Opcode is "ld" or "st" && !i.Has("param")) || ShapeAnalysis.Widens(i) || (i.Opcode == "mul" && i.Has("wide"));

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
        or "mad" or "fma" or "div" or "sqrt" or "neg" or "abs" or "not" or "min" or "max" or "shl" or "shr" or "and" or "or" or "xor" or "setp" or "bfe"
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
    /// collective, the registers live after it that the method keeps as scalars (see <see cref="ScalarAfter"/>).
    /// </summary>
    public static (Func<LaneContext, int, int> Run, ScalarAfter[][] ScalarsAfter)? TryCompile(
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

    private (Func<LaneContext, int, int>, ScalarAfter[][]) Build()
    {
        _scopes.Add(new(StringComparer.Ordinal));

        // The carry flag's slot, which this code never uses (an instruction with a carry is not vectorised).
        _slots.Add(new Slot(Kind.I32, null, Shape.Varying));
        _address64 = _il.DeclareLocal(typeof(long));
        _address32 = _il.DeclareLocal(typeof(int));
        _groupSlots = _il.DeclareLocal(typeof(Vector256<long>).MakeByRefType());
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

        foreach (var (stub, at, refill) in _leaves)
        {
            _il.MarkLabel(stub);
            if (refill >= 0)
            {
                // A global access whose site's cache missed: the cache learns the allocation the address is in (if
                // any) for the next group, and the scalar code makes this access, checked, thread by thread.
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldloc, _address64!);
                _il.Emit(OpCodes.Ldc_I4, refill);
                Call(nameof(Simd.Refill));
            }

            EmitLeave(at);
        }

        // Resume k+1: after collective k from the vector slots; 1+K+k: from each thread's scalar slots, for a group that
        // diverged before and whose threads meet again at that barrier.
        var stubs = new Label[2 * _collectives.Count];
        for (var k = 0; k < stubs.Length; k++)
        {
            var (after, at) = _collectives[k % _collectives.Count];
            stubs[k] = _il.DefineLabel();
            _il.MarkLabel(stubs[k]);
            if (k < _collectives.Count)
            {
                LoadGroupSlots();
            }

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
        var scalarsAfter = _collectives
            .Select(c => _liveness.LiveOut(c.At).Where(r => _slots[r].Scalar).Select(r => new ScalarAfter(r, _slots[r].Shape.Stride, _slots[r].Kind == Kind.I64)).ToArray())
            .ToArray();
        return (_method.CreateDelegate<Func<LaneContext, int, int>>(), scalarsAfter);
    }

    private void EmitBody(IReadOnlyList<PtxStatement> body)
    {
        for (var at = 0; at < body.Count; at++)
        {
            var statement = body[at];
            (_block, _at) = (body, at);
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
                    _checked.Clear();
                    break;
                case PtxBlock b:
                    // A name of the inner scope may stand for another register than the same name outside it.
                    _checked.Clear();
                    _scopes.Add(new(StringComparer.Ordinal));
                    EmitBody(b.Body);
                    _scopes.RemoveAt(_scopes.Count - 1);
                    _checked.Clear();
                    break;
                case PtxInstruction i when _hoistedSet.Contains(i):
                    break;
                case PtxInstruction i:
                    _current = i;
                    EmitGuarded(i);
                    Written(i);
                    break;
                default:
                    throw new NotVectorised();
            }
        }
    }

    /// <summary>The checks through a register that <paramref name="i"/> writes no longer hold.</summary>
    private void Written(PtxInstruction i)
    {
        if (i.Operands.Count > 0 && i.Opcode is not ("st" or "bra" or "ret" or "exit" or "bar" or "barrier"))
        {
            var written = Destinations(i.Operands[0]).ToHashSet(StringComparer.Ordinal);
            _checked.RemoveWhere(c => written.Contains(c.Base));
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
            // A register never written is uniform (its value is undefined, and the same undefined value for all eight).
            var shape = _shapes.TryGetValue(name, out var s) ? s : Shape.Uniform;
            if (kind == Kind.F32 && !shape.Varies && shape.Stride != 0)
            {
                shape = Shape.Varying;
            }

            var slot = new Slot(kind, _il.DeclareLocal(shape.Varies ? VectorType(kind) : ScalarType(kind)), shape, name);
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

    private static Type ScalarType(Kind kind) => kind switch
    {
        Kind.I32 => typeof(int),
        Kind.F32 => typeof(float),
        Kind.I64 => typeof(long),
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

        var skip = _il.DefineLabel();
        var predicate = Find(i.Guard.Predicate);
        if (predicate.Scalar)
        {
            // A uniform guard: all eight run it, or none does.
            _il.Emit(OpCodes.Ldloc, predicate.Local!);
            _il.Emit(i.Guard.Negated ? OpCodes.Brtrue : OpCodes.Brfalse, skip);
            EmitInstruction(i);
            _il.MarkLabel(skip);
            return;
        }

        // All eight agree: run it (or not) for all; else they diverge here, each to go on alone.
        var run = _il.DefineLabel();
        LoadSlot(predicate, Kind.I32);
        Call(nameof(Simd.Uniform));
        _il.Emit(OpCodes.Switch, i.Guard.Negated ? [run, skip] : [skip, run]);
        _il.Emit(OpCodes.Br, LeaveStub());
        _il.MarkLabel(run);
        EmitInstruction(i);
        _il.MarkLabel(skip);
    }

    /// <summary>A label that leaves the vector code before the current instruction (see <see cref="EmitLeave"/>).</summary>
    private Label LeaveStub(int refill = -1)
    {
        if (!_entries.ContainsKey(_current))
        {
            throw new NotVectorised();
        }

        var stub = _il.DefineLabel();
        _leaves.Add((stub, _current, refill));
        return stub;
    }

    /// <summary>The eight hand their registers to their scalar slots and go on alone from the scalar entry before <paramref name="at"/>.</summary>
    private void EmitLeave(PtxInstruction at)
    {
        foreach (var r in _liveness.LiveIn(at))
        {
            Spill(r);
        }

        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, _entries[at]);
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
    }

    private void EmitInstruction(PtxInstruction i)
    {
        if (i.Operands.Count > 0 && i.Operands[0] is PtxRegister d && FindOrNull(d.Name) is { Scalar: true } slot && TryEmitScalar(i, slot))
        {
            return;
        }

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
                LoadGroupSlots();
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
                _checked.Clear();
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
            case "bfe" when i.Operands is [PtxRegister, _, PtxInteger { Value: >= 0 and < 32 } position, PtxInteger { Value: >= 1 and <= 32 } length]
                && position.Value + length.Value <= 32 && Type(i) is "u32" or "s32" && i.Modifiers.Count == 1:
                // A field at a constant place: shifted to the top, then back down with or without its sign.
                EmitField(i.Operands[1], i.Operands[0], (int)position.Value, (int)length.Value, Type(i) == "s32");
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

    // ---- scalar code: registers kept as their first lane's value --------------------------------------------

    /// <summary>
    /// The instructions whose scalar form gives a scalar register its first lane's value: integer ring operations (a
    /// lane-wise operation's first lane is the operation on the operands' first lanes; the stride is the analysis's),
    /// moves, parameter loads and loads at an address the eight share. Anything else writing a scalar register (a uniform
    /// comparison, a uniform float operation) runs as a vector, and the register keeps its first lane.
    /// </summary>
    private bool TryEmitScalar(PtxInstruction i, Slot destination)
    {
        var type = Type(i);
        var kind = KindOf(type);
        var sources = i.Operands.Skip(1).ToArray();
        var plain = i.Modifiers.All(m => m == type);
        switch (i.Opcode)
        {
            case "mov" when sources.Length == 1:
                LoadScalar(sources[0], kind);
                break;
            case "cvta" when i.Has("u64") && i.Has("global") && sources.Length == 1:
                LoadScalar(sources[0], Kind.I64);
                break;
            case "ld" when i.Has("param"):
                var (_, loaded) = Access(i);
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldc_I4, ParamOffset(sources[0], PtxTypes.SizeOf(loaded)));
                Call(kind switch { Kind.I64 => nameof(Simd.ParamI64), Kind.F32 => nameof(Simd.ParamF32), _ => nameof(Simd.ParamI32) });
                break;
            case "ld":
                var (space, _) = Access(i);
                if (kind == Kind.I64 || !ShapeOf(sources[0]).IsUniform)
                {
                    return false;
                }

                EmitUniformAccess(sources[0], space, load: true);
                if (kind == Kind.F32)
                {
                    Call(nameof(Simd.IntBitsF32));
                }

                break;
            case "add" or "sub" when kind != Kind.F32 && plain && sources.Length == 2:
                LoadScalar(sources[0], kind);
                LoadScalar(sources[1], kind);
                _il.Emit(i.Opcode == "add" ? OpCodes.Add : OpCodes.Sub);
                break;
            case "mul" when kind != Kind.F32 && i.Has("lo") && i.Modifiers.Count == 2 && sources.Length == 2:
                LoadScalar(sources[0], kind);
                LoadScalar(sources[1], kind);
                _il.Emit(OpCodes.Mul);
                break;
            case "mad" when kind != Kind.F32 && i.Has("lo") && i.Modifiers.Count == 2 && sources.Length == 3:
                LoadScalar(sources[0], kind);
                LoadScalar(sources[1], kind);
                _il.Emit(OpCodes.Mul);
                LoadScalar(sources[2], kind);
                _il.Emit(OpCodes.Add);
                break;
            case "mul" when kind == Kind.I32 && i.Has("wide") && i.Modifiers.Count == 2 && sources.Length == 2:
                var signed = type == "s32";
                CheckWidening(sources[0], signed);
                CheckWidening(sources[1], signed);
                LoadScalar(sources[0], Kind.I32);
                _il.Emit(signed ? OpCodes.Conv_I8 : OpCodes.Conv_U8);
                LoadScalar(sources[1], Kind.I32);
                _il.Emit(signed ? OpCodes.Conv_I8 : OpCodes.Conv_U8);
                _il.Emit(OpCodes.Mul);
                kind = Kind.I64;
                break;
            case "shl" when kind != Kind.F32 && plain && sources is [_, PtxInteger { Value: >= 0 } count] && count.Value < (kind == Kind.I64 ? 64 : 32):
                LoadScalar(sources[0], kind);
                _il.Emit(OpCodes.Ldc_I4, (int)count.Value);
                _il.Emit(OpCodes.Shl);
                break;
            case "neg" or "not" when kind != Kind.F32 && type != "pred" && plain && sources.Length == 1:
                LoadScalar(sources[0], kind);
                _il.Emit(i.Opcode == "neg" ? OpCodes.Neg : OpCodes.Not);
                break;
            case "cvt" when ShapeAnalysis.Widens(i) && sources.Length == 1:
                CheckWidening(sources[0], signed: i.Has("s32"));
                LoadScalar(sources[0], Kind.I32);
                _il.Emit(i.Has("s32") ? OpCodes.Conv_I8 : OpCodes.Conv_U8);
                kind = Kind.I64;
                break;
            case "cvt" when string.Join('.', i.Modifiers) is "u32.u64" or "s32.s64" or "u32.s64" or "s32.u64" && sources.Length == 1:
                LoadScalar(sources[0], Kind.I64);
                _il.Emit(OpCodes.Conv_I4);
                kind = Kind.I32;
                break;
            default:
                return false;
        }

        StoreScalar(destination, kind);
        return true;
    }

    /// <summary>
    /// A 32-bit index widened to 64 bits keeps its stride only where its eight lanes do not wrap around 2^32 (2^31
    /// signed): checked here, the eight leaving the vector code where they do.
    /// </summary>
    private void CheckWidening(PtxOperand source, bool signed)
    {
        var shape = ShapeOf(source);
        if (shape.Stride == 0)
        {
            return;
        }

        LoadScalar(source, Kind.I32);
        _il.Emit(OpCodes.Ldc_I8, shape.Stride);
        Call(signed ? nameof(Simd.WidensS32) : nameof(Simd.WidensU32));
        _il.Emit(OpCodes.Brfalse, LeaveStub());
    }

    /// <summary>Pushes an operand's first lane as <paramref name="kind"/> (int, float or long): a scalar register, a special register, an immediate or a symbol.</summary>
    private void LoadScalar(PtxOperand operand, Kind kind)
    {
        switch (operand)
        {
            case PtxRegister r when FindOrNull(r.Name) is { } slot:
                if (!slot.Scalar)
                {
                    throw new NotVectorised();
                }

                _il.Emit(OpCodes.Ldloc, slot.Local!);
                ConvertScalar(slot.Kind, kind);
                return;
            case PtxRegister r when kind == Kind.I32:
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, typeof(LaneContext).GetField(r.Name switch
                {
                    "%tid.x" => nameof(LaneContext.GroupTidX),
                    "%tid.y" => nameof(LaneContext.GroupTidY),
                    "%tid.z" => nameof(LaneContext.GroupTidZ),
                    "%laneid" => nameof(LaneContext.GroupLane),
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
                })!);
                return;
            case PtxInteger n when kind == Kind.F32:
                _il.Emit(OpCodes.Ldc_R4, (float)n.Value);
                return;
            case PtxInteger n:
                EmitInteger(kind, n.Value);
                return;
            case PtxFloat f when kind == Kind.F32:
                _il.Emit(OpCodes.Ldc_R4, (float)f.Value);
                return;
            case PtxFloat f:
                EmitInteger(kind, f.Single ? BitConverter.SingleToInt32Bits((float)f.Value) : BitConverter.DoubleToInt64Bits(f.Value));
                return;
            case PtxSymbol s when _windows.TryGetValue(s.Name, out var w) && w.Space == PtxStateSpace.Shared && kind != Kind.F32:
                EmitInteger(kind, (long)w.Offset + s.Offset);
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

                return;
            default:
                throw new NotVectorised();
        }
    }

    private void EmitInteger(Kind kind, long value)
    {
        if (kind == Kind.I64)
        {
            _il.Emit(OpCodes.Ldc_I8, value);
        }
        else
        {
            _il.Emit(OpCodes.Ldc_I4, unchecked((int)value));
        }
    }

    /// <summary>A scalar's bits as another kind of the same width: int and float reinterpret each other.</summary>
    private void ConvertScalar(Kind from, Kind to)
    {
        switch ((from, to))
        {
            case var same when same.from == same.to:
                return;
            case (Kind.I32, Kind.F32):
                Call(nameof(Simd.IntBitsF32));
                return;
            case (Kind.F32, Kind.I32):
                Call(nameof(Simd.F32IntBits));
                return;
            default:
                throw new NotVectorised();
        }
    }

    /// <summary>Stores the scalar on the stack (of <paramref name="kind"/>) in a scalar register.</summary>
    private void StoreScalar(Slot slot, Kind kind)
    {
        ConvertScalar(kind, slot.Kind);
        _il.Emit(OpCodes.Stloc, slot.Local!);
    }

    /// <summary>The shape of an operand where the vector code reads it.</summary>
    private Shape ShapeOf(PtxOperand operand) => operand switch
    {
        PtxRegister r when FindOrNull(r.Name) is { } slot => slot.Shape,
        PtxRegister r => ShapeAnalysis.Special(r.Name),
        PtxNot n => ShapeOf(n.Operand),
        PtxAddress { Base: { } b } => ShapeOf(b),
        PtxAddress or PtxInteger or PtxFloat or PtxSymbol => Shape.Uniform,
        _ => Shape.Varying,
    };

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
            ("shr", "b64" or "u64", "") => nameof(Simd.ShrU64),
            ("shr", "s64", "") => nameof(Simd.ShrS64),
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
            "s64" => (nameof(Simd.SetpS64), Kind.I64),
            "u64" or "b64" when type == "u64" || op >= 4 => (nameof(Simd.SetpU64), Kind.I64),
            _ => throw new NotVectorised(),
        };
        Load(i.Operands[1], kind);
        Load(i.Operands[2], kind);
        _il.Emit(OpCodes.Ldc_I4, op);
        Call(helper);
        Store(i.Operands[0], Kind.I32);
    }

    /// <summary>The <paramref name="length"/> bits of <paramref name="source"/> from bit <paramref name="position"/>, zero- or sign-extended, into <paramref name="destination"/>.</summary>
    private void EmitField(PtxOperand source, PtxOperand destination, int position, int length, bool signed)
    {
        Load(source, Kind.I32);
        _il.Emit(OpCodes.Ldc_I4, 32 - position - length);
        Call(nameof(Simd.ShlI32));
        _il.Emit(OpCodes.Ldc_I4, 32 - length);
        Call(signed ? nameof(Simd.ShrS32) : nameof(Simd.ShrU32));
        Store(destination, Kind.I32);
    }

    private void EmitCvt(PtxInstruction i)
    {
        switch (string.Join('.', i.Modifiers))
        {
            // From an 8- or 16-bit integer held in a 32-bit register: its low bits, extended.
            case "s32.s8" or "u32.s8" or "s32.s16" or "u32.s16" or "s32.u8" or "u32.u8" or "s32.u16" or "u32.u16" when i.Operands.Count == 2:
                var narrow = i.Modifiers[1];
                EmitField(i.Operands[1], i.Operands[0], 0, narrow.EndsWith('8') ? 8 : 16, narrow[0] == 's');
                return;
        }

        var (helper, from, to) = string.Join('.', i.Modifiers) switch
        {
            "u64.u32" => (nameof(Simd.WidenU32), Kind.I32, Kind.I64),
            "s64.s32" => (nameof(Simd.WidenS32), Kind.I32, Kind.I64),
            "u32.u64" or "s32.s64" or "u32.s64" or "s32.u64" => (nameof(Simd.NarrowI64), Kind.I64, Kind.I32),
            "rn.f32.s32" => (nameof(Simd.S32ToF32), Kind.I32, Kind.F32),
            "rn.f32.u32" => (nameof(Simd.U32ToF32), Kind.I32, Kind.F32),
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
        if (i.Operands[0] is PtxVector vector)
        {
            EmitVectorAccess(i.Operands[1], space, kind, vector, load: true);
            return;
        }

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

        switch (ShapeOf(i.Operands[1]))
        {
            case { IsUniform: true }:
                // One load for all eight (a scalar destination took it in TryEmitScalar).
                EmitUniformAccess(i.Operands[1], space, load: true);
                Call(nameof(Simd.BroadcastI32));
                break;
            case { Varies: false, Stride: 4 }:
                EmitConsecutiveAccess(i.Operands[1], space, load: true);
                break;
            default:
                EmitAddressed(i.Operands[1], space, load: true);
                break;
        }

        Store(i.Operands[0], Kind.I32, reinterpretAs: kind);
    }

    private void EmitStore(PtxInstruction i)
    {
        var (space, type) = Access(i);
        var kind = KindOf(type);
        if (i.Operands[1] is PtxVector vector)
        {
            EmitVectorAccess(i.Operands[0], space, kind, vector, load: false);
            return;
        }

        if (space == "param" || kind == Kind.I64)
        {
            throw new NotVectorised();
        }

        switch (ShapeOf(i.Operands[0]))
        {
            case { IsUniform: true }:
                EmitUniformAccess(i.Operands[0], space, load: false, value: i.Operands[1], kind: kind);
                break;
            case { Varies: false, Stride: 4 }:
                EmitConsecutiveAccess(i.Operands[0], space, load: false, value: i.Operands[1], kind: kind);
                break;
            default:
                EmitAddressed(i.Operands[0], space, load: false, value: i.Operands[1], kind: kind);
                break;
        }
    }

    /// <summary>
    /// Pushes an access's first-lane address (a long, or an int offset in the shared window) from its scalar base and
    /// offset, and keeps it in the address local for the access after the check; whether it is a shared one.
    /// </summary>
    private bool EmitScalarAddress(PtxOperand operand, string space, out string baseName)
    {
        if (operand is not PtxAddress address)
        {
            throw new NotVectorised();
        }

        var shared = space == "shared";
        switch (address.Base)
        {
            case PtxRegister r when FindOrNull(r.Name) is { Scalar: true } slot && slot.Kind == (shared ? Kind.I32 : Kind.I64):
                _il.Emit(OpCodes.Ldloc, slot.Local!);
                baseName = r.Name;
                AddOffset(shared ? Kind.I32 : Kind.I64, address.Offset);
                break;
            case PtxRegister r when shared && FindOrNull(r.Name) is { Scalar: true, Kind: Kind.I64 } slot:
                // A 64-bit shared address (clang's): offset in the window where it fits an int, else -1, which no
                // check passes, so the scalar code faults it.
                _il.Emit(OpCodes.Ldloc, slot.Local!);
                baseName = r.Name;
                AddOffset(Kind.I64, address.Offset);
                Call(nameof(Simd.SharedOffset));
                break;
            case PtxSymbol s when shared && _windows.TryGetValue(s.Name, out var w) && w.Space == PtxStateSpace.Shared:
                _il.Emit(OpCodes.Ldc_I4, checked((int)((long)w.Offset + s.Offset)));
                baseName = s.Name;
                AddOffset(Kind.I32, address.Offset);
                break;
            default:
                throw new NotVectorised();
        }

        _il.Emit(OpCodes.Stloc, shared ? _address32! : _address64!);
        return shared;
    }

    private void AddOffset(Kind kind, long offset)
    {
        if (offset != 0)
        {
            EmitInteger(kind, offset);
            _il.Emit(OpCodes.Add);
        }
    }

    /// <summary>
    /// The check of an access of <paramref name="bytes"/> at the address in the address local: the eight leave where it
    /// fails; none where an access checked since the last label already covered it.
    /// </summary>
    private void EmitCheck(PtxOperand operand, string baseName, bool shared, int bytes)
    {
        var offset = ((PtxAddress)operand).Offset;
        if (_checked.Contains((baseName, offset, shared, bytes)))
        {
            return;
        }

        // An unguarded access checks, with its own, the accesses through the same base that follow it up to the next
        // label, branch, barrier or write of the base (a tile's sixteen loads at constant offsets: one check): the
        // span from the lowest offset to the end of the highest, each aligned as the first. Where that check fails
        // the eight leave here, and the scalar code makes each access, checked, in turn.
        var offsets = _current.Guard is null ? Following(baseName, shared) : [];
        offsets.Add(offset);
        var (low, high) = (offsets.Min(), offsets.Max() + bytes);
        _il.Emit(OpCodes.Ldarg_0);
        if (shared)
        {
            _il.Emit(OpCodes.Ldloc, _address32!);
            EmitInteger(Kind.I32, low - offset);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldc_I4, checked((int)(high - low)));
            Call(nameof(Simd.SharedFits));
            _il.Emit(OpCodes.Brfalse, LeaveStub());
        }
        else
        {
            var slot = 2 * _unit.CachedSites++;
            _il.Emit(OpCodes.Ldloc, _address64!);
            EmitInteger(Kind.I64, low - offset);
            _il.Emit(OpCodes.Add);
            _il.Emit(OpCodes.Ldc_I4, checked((int)(high - low)));
            _il.Emit(OpCodes.Ldc_I4, slot);
            Call(nameof(Simd.Fits));
            _il.Emit(OpCodes.Brfalse, LeaveStub(slot));
        }

        if (_current.Guard is null)
        {
            foreach (var o in offsets)
            {
                _checked.Add((baseName, o, shared, bytes));
            }
        }
    }

    /// <summary>
    /// The offsets of the accesses through <paramref name="baseName"/> (shared or not) after the current instruction
    /// and before the next label, branch, barrier, nested block or write of the base, where each is a multiple of 4
    /// from the current one's (so one alignment check holds for all) and they span at most 4 KiB.
    /// </summary>
    private List<long> Following(string baseName, bool shared)
    {
        var from = ((PtxAddress)(_current.Opcode == "st" ? _current.Operands[0] : _current.Operands[1])).Offset;
        var offsets = new List<long>();
        for (var k = _at + 1; k < _block.Count && _block[k] is PtxInstruction i && i.Opcode is not ("bra" or "ret" or "exit" or "bar" or "barrier"); k++)
        {
            if (i.Opcode is "ld" or "st" && !i.Has("param") && i.Operands.Count == 2
                && (i.Opcode == "st" ? i.Operands[0] : i.Operands[1]) is PtxAddress { Base: PtxRegister or PtxSymbol } a
                && (a.Base is PtxRegister r ? r.Name : ((PtxSymbol)a.Base).Name) == baseName
                && i.Has("shared") == shared && (a.Offset - from) % 4 == 0 && Math.Abs(a.Offset - from) <= 4096)
            {
                offsets.Add(a.Offset);
            }

            if (i.Operands.Count > 0 && i.Opcode != "st" && Destinations(i.Operands[0]).Contains(baseName))
            {
                break;
            }
        }

        return offsets;
    }

    /// <summary>
    /// A .v2 or .v4 access of 32-bit words where the eight addresses are the same or step by a multiple of the vector's
    /// size, up to 1 KiB: one check of the span the eight touch and of the first address's alignment to the vector's
    /// size (which then holds for all), then each word of the eight vectors loaded (into its register) or stored (from
    /// its operand). Any other address shape is not vectorised.
    /// </summary>
    private void EmitVectorAccess(PtxOperand operand, string space, Kind kind, PtxVector vector, bool load)
    {
        var count = vector.Elements.Count;
        var size = 4 * count;
        if (kind == Kind.I64 || count is not (2 or 4) || (load && vector.Elements.Any(e => e is not PtxRegister)) || space == "param"
            || ShapeOf(operand) is not { Varies: false, Stride: var stride } || stride < 0 || stride > 1024 || stride % size != 0)
        {
            throw new NotVectorised();
        }

        var shared = EmitScalarAddress(operand, space, out _);
        var leave = LeaveStub(shared ? -1 : 2 * _unit.CachedSites);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldloc, shared ? _address32! : _address64!);
        _il.Emit(OpCodes.Ldc_I4, checked((int)((7 * stride) + size)));
        if (shared)
        {
            Call(nameof(Simd.SharedFits));
        }
        else
        {
            _il.Emit(OpCodes.Ldc_I4, 2 * _unit.CachedSites++);
            Call(nameof(Simd.Fits));
        }

        _il.Emit(OpCodes.Brfalse, leave);
        _il.Emit(OpCodes.Ldloc, shared ? _address32! : _address64!);
        if (shared)
        {
            _il.Emit(OpCodes.Conv_I8);
        }

        _il.Emit(OpCodes.Ldc_I4, size - 1);
        Call(nameof(Simd.Aligned));
        _il.Emit(OpCodes.Brfalse, leave);
        for (var k = 0; k < count; k++)
        {
            PushAddress(shared);
            _il.Emit(OpCodes.Ldc_I4, (int)stride);
            _il.Emit(OpCodes.Ldc_I4, k);
            if (load)
            {
                Call(shared ? nameof(Simd.GatherSharedWord) : nameof(Simd.GatherWord));
                Store(vector.Elements[k], Kind.I32, reinterpretAs: kind);
            }
            else
            {
                LoadBits(vector.Elements[k], kind);
                Call(shared ? nameof(Simd.ScatterSharedWord) : nameof(Simd.ScatterWord));
            }
        }
    }

    /// <summary>
    /// The first lane's address of an access (<see cref="EmitScalarAddress"/>) checked for <paramref name="bytes"/>
    /// (<see cref="EmitCheck"/>) and pushed as a shared or global accessor takes it; whether it is a shared one.
    /// </summary>
    private bool EmitCheckedAddress(PtxOperand operand, string space, int bytes)
    {
        var shared = EmitScalarAddress(operand, space, out var baseName);
        EmitCheck(operand, baseName, shared, bytes);
        PushAddress(shared);
        return shared;
    }

    /// <summary>Pushes the address local as the accessors take it: the context and the shared offset, or the global address.</summary>
    private void PushAddress(bool shared)
    {
        if (shared)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _address32!);
        }
        else
        {
            _il.Emit(OpCodes.Ldloc, _address64!);
        }
    }

    /// <summary>
    /// An access whose eight addresses step by 4 (an affine base of stride 4): one check of the first lane's address for
    /// 32 bytes, then one vector load (pushed) or store of <paramref name="value"/>.
    /// </summary>
    private void EmitConsecutiveAccess(PtxOperand operand, string space, bool load, PtxOperand? value = null, Kind kind = Kind.I32)
    {
        var shared = EmitCheckedAddress(operand, space, 32);

        if (load)
        {
            Call(shared ? nameof(Simd.LoadSharedAt) : nameof(Simd.LoadAt));
            return;
        }

        LoadBits(value!, kind);
        Call(shared ? nameof(Simd.StoreSharedAt) : nameof(Simd.StoreAt));
    }

    /// <summary>
    /// An access at an address the eight share: one check and one 4-byte load (its value pushed as an int) or store
    /// (of the last lane's value, which is what stays where eight threads store to one place).
    /// </summary>
    private void EmitUniformAccess(PtxOperand operand, string space, bool load, PtxOperand? value = null, Kind kind = Kind.I32)
    {
        var shared = EmitCheckedAddress(operand, space, 4);

        if (load)
        {
            Call(shared ? nameof(Simd.LoadSharedScalar) : nameof(Simd.LoadScalarAt));
            return;
        }

        if (ShapeOf(value!).IsUniform)
        {
            LoadScalar(value!, kind);
            ConvertScalar(kind, kind == Kind.F32 ? Kind.I32 : kind);
        }
        else
        {
            LoadBits(value!, kind);
            Call(nameof(Simd.LastLane));
        }

        Call(shared ? nameof(Simd.StoreSharedScalar) : nameof(Simd.StoreScalarAt));
    }

    /// <summary>A 4-byte access of eight threads at addresses of any shape: pushes what it loads, or stores <paramref name="value"/>.</summary>
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
            switch (address.Base)
            {
                case PtxRegister r when Find(r.Name).Kind == Kind.I32:
                    Load(r, Kind.I32);
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
            Call(load ? nameof(Simd.LoadShared32) : nameof(Simd.StoreShared32));
            return;
        }

        if (address.Base is not PtxRegister b || Find(b.Name).Kind != Kind.I64)
        {
            throw new NotVectorised();
        }

        Load(b, Kind.I64);
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
        Call(load ? nameof(Simd.LoadGlobal32) : nameof(Simd.StoreGlobal32));
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
                case "v2" or "v4" when i.Opcode is "ld" or "st":
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

    /// <summary>Pushes <paramref name="operand"/> as a vector of <paramref name="kind"/>: a scalar one made the eight lanes it stands for.</summary>
    private void Load(PtxOperand operand, Kind kind)
    {
        switch (operand)
        {
            case PtxRegister r when FindOrNull(r.Name) is { Scalar: false } slot:
                LoadSlot(slot, kind);
                return;
            case PtxRegister r when FindOrNull(r.Name) is { } slot:
                _il.Emit(OpCodes.Ldloc, slot.Local!);
                Spread(slot.Kind, slot.Shape.Stride);
                Reinterpret(slot.Kind, kind);
                return;
            case PtxRegister r when kind == Kind.I32:
                LoadScalar(r, Kind.I32);
                Spread(Kind.I32, ShapeAnalysis.Special(r.Name).Stride);
                return;
            case PtxNot { Operand: PtxRegister p } when kind == Kind.I32:
                Load(p, Kind.I32);
                Call(nameof(Simd.NotPred));
                return;
            case PtxInteger or PtxFloat or PtxSymbol:
                LoadScalar(operand, kind);
                Spread(kind, 0);
                return;
            default:
                throw new NotVectorised();
        }
    }

    /// <summary>The scalar on the stack (a first lane) as the eight lanes of its shape: lane l is it plus l × <paramref name="stride"/>.</summary>
    private void Spread(Kind kind, long stride)
    {
        switch (kind)
        {
            case Kind.I32 when stride == 0:
                Call(nameof(Simd.BroadcastI32));
                return;
            case Kind.I32:
                for (var l = 0; l < Simd.Lanes; l++)
                {
                    _il.Emit(OpCodes.Ldc_I4, unchecked((int)(stride * l)));
                }

                _il.Emit(OpCodes.Call, typeof(Vector256).GetMethod(nameof(Vector256.Create), [.. Enumerable.Repeat(typeof(int), Simd.Lanes)])!);
                Call(nameof(Simd.AffineI32));
                return;
            case Kind.I64 when stride == 0:
                Call(nameof(Simd.BroadcastI64));
                return;
            case Kind.I64:
                for (var l = 0; l < Simd.Lanes; l++)
                {
                    _il.Emit(OpCodes.Ldc_I8, stride * l);
                    if (l % 4 == 3)
                    {
                        _il.Emit(OpCodes.Call, typeof(Vector256).GetMethod(nameof(Vector256.Create), [.. Enumerable.Repeat(typeof(long), 4)])!);
                    }
                }

                Call(nameof(Simd.AffineI64));
                return;
            case Kind.F32 when stride == 0:
                Call(nameof(Simd.BroadcastF32));
                return;
            default:
                throw new NotVectorised();
        }
    }

    /// <summary>Pushes a vector register as <paramref name="kind"/>: f32 and 32-bit integer registers reinterpret each other's bits.</summary>
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

    /// <summary>Stores the vector on the stack in a register: a scalar register keeps its first lane (the analysis says the rest follow from it).</summary>
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
                if (slot.Scalar)
                {
                    Call(slot.Kind switch { Kind.I64 => nameof(Simd.FirstI64), Kind.F32 => nameof(Simd.FirstF32), _ => nameof(Simd.FirstI32) });
                }

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

    /// <summary>Pushes a scalar register's first lane as the bits of a 64-bit slot (an int's and a float's sign-extended).</summary>
    private void LoadScalarBits(Slot slot)
    {
        _il.Emit(OpCodes.Ldloc, slot.Local!);
        if (slot.Kind == Kind.F32)
        {
            Call(nameof(Simd.F32IntBits));
        }

        if (slot.Kind != Kind.I64)
        {
            _il.Emit(OpCodes.Conv_I8);
        }
    }

    /// <summary>A 64-bit slot's bits back into a scalar register.</summary>
    private void StoreScalarBits(Slot slot)
    {
        if (slot.Kind != Kind.I64)
        {
            _il.Emit(OpCodes.Conv_I4);
        }

        StoreScalar(slot, slot.Kind == Kind.I64 ? Kind.I64 : Kind.I32);
    }

    private void Spill(int register, bool toVector = false)
    {
        var slot = _slots[register];
        if (slot.Local is null)
        {
            throw new NotVectorised();
        }

        if (toVector)
        {
            // Into the group's slots, whose start the barrier's code has put in its local.
            _il.Emit(OpCodes.Ldloc, _groupSlots!);
            if (slot.Scalar)
            {
                LoadScalarBits(slot);
            }
            else
            {
                _il.Emit(OpCodes.Ldloc, slot.Local);
                Reinterpret(slot.Kind, slot.Kind == Kind.I64 ? Kind.I64 : Kind.I32);
            }

            _il.Emit(OpCodes.Ldc_I4, register);
            Call(slot.Scalar ? nameof(Simd.StashScalar) : slot.Kind == Kind.I64 ? nameof(Simd.StashI64) : nameof(Simd.StashI32));
            return;
        }

        _il.Emit(OpCodes.Ldarg_0);
        if (slot.Scalar)
        {
            LoadScalarBits(slot);
            _il.Emit(OpCodes.Ldc_I8, slot.Shape.Stride);
            _il.Emit(OpCodes.Ldc_I4, register);
            _il.Emit(OpCodes.Ldc_I4, _registerCount);
            Call(slot.Kind == Kind.I64 ? nameof(Simd.SpillAffineI64) : nameof(Simd.SpillAffineI32));
            return;
        }

        _il.Emit(OpCodes.Ldloc, slot.Local);
        Reinterpret(slot.Kind, slot.Kind == Kind.I64 ? Kind.I64 : Kind.I32);
        _il.Emit(OpCodes.Ldc_I4, register);
        _il.Emit(OpCodes.Ldc_I4, _registerCount);
        Call(slot.Kind == Kind.I64 ? nameof(Simd.SpillI64) : nameof(Simd.SpillI32));
    }

    /// <summary>Puts the start of the current group's vector slots in its local, for the stashes or unstashes that follow.</summary>
    private void LoadGroupSlots()
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, _registerCount);
        Call(nameof(Simd.GroupSlots));
        _il.Emit(OpCodes.Stloc, _groupSlots!);
    }

    private void Reload(int register, bool fromVector)
    {
        var slot = _slots[register];
        if (slot.Local is null)
        {
            throw new NotVectorised();
        }

        if (fromVector)
        {
            // From the group's slots, whose start the resume stub has put in its local.
            _il.Emit(OpCodes.Ldloc, _groupSlots!);
            _il.Emit(OpCodes.Ldc_I4, register);
        }
        else
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, register);
            _il.Emit(OpCodes.Ldc_I4, _registerCount);
        }

        if (slot.Scalar)
        {
            // From the vector slots, or the first thread's scalar slot (the block runner checked the others follow it).
            Call(fromVector ? nameof(Simd.UnstashScalar) : nameof(Simd.ReloadScalar));
            StoreScalarBits(slot);
            return;
        }

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

    /// <summary>A register's local: a vector of the eight values, or (<see cref="Scalar"/>) the first lane's value of a uniform or affine register.</summary>
    private sealed record Slot(Kind Kind, LocalBuilder? Local, Shape Shape, string? Name = null)
    {
        public bool Scalar => Local is not null && !Shape.Varies;
    }

    /// <summary>Something this compiler does not vectorise: the kernel runs on its scalar method alone.</summary>
    private sealed class NotVectorised : Exception;
}

/// <summary>
/// A register live after a collective that the vector code keeps as a scalar: a group whose threads went their own ways
/// runs as a vector again there only where each thread's value is the first one's plus its lane × <see cref="Stride"/>
/// (in 64 bits where <see cref="Wide"/>, else in the low 32).
/// </summary>
internal readonly record struct ScalarAfter(int Register, long Stride, bool Wide);
