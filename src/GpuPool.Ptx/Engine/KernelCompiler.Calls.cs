using System.Reflection.Emit;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// Calls to <c>.func</c>s and device printf. Each function a kernel reaches is compiled, with the kernel, to a method of
/// its own, <c>int F(LaneContext thread, nint return0, …, nint parameter0, …)</c>: its return values and parameters are
/// pointers to the caller's <c>.param</c> variables, as PTX's ABI passes them through the caller's param space; its
/// <c>.local</c> variables lie in a frame on the thread's stack (in its local memory, after the kernel's own), which is
/// what lets a function recurse. A function returns <see cref="Returned"/>, or <see cref="Exited"/> or
/// <see cref="Stopped"/>, which its caller passes on.
/// </summary>
internal sealed partial class KernelCompiler
{
    private void BuildFunction()
    {
        var body = _function.Body!;
        var argument = 1;
        foreach (var p in _function.Returns.Concat(_function.Parameters))
        {
            _windowVariables[p.Name] = new WindowVariable(PtxStateSpace.Param, 0, argument++, p.Bytes);
        }

        RefuseShared(body);
        foreach (var name in _module.DynamicShared)
        {
            _windowVariables[name] = new WindowVariable(PtxStateSpace.Shared, Align(_unit.KernelSharedBytes, 16));
        }

        _scopes.Add([]);
        CarryFlag();

        // frame = thread.StackTop; a frame past the thread's local memory is a stack overflow.
        _frame = _il.DeclareLocal(typeof(long));
        var overflow = Site($"line {_function.Line} (the frame of {_function.Name})");
        var fits = _il.DefineLabel();
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.StackTop)));
        _il.Emit(OpCodes.Stloc, _frame);
        _il.Emit(OpCodes.Ldloc, _frame);
        _il.Emit(OpCodes.Ldc_I8, (long)_frameBytes);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.LocalBytes)));
        _il.Emit(OpCodes.Ble_Un, fits);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, overflow);
        _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(nameof(LaneContext.StackOverflow))!);
        _il.MarkLabel(fits);

        EmitLoadCache();
        EmitBody(body);
        _il.Emit(OpCodes.Ldc_I4, Returned);
        _il.Emit(OpCodes.Ret);
        _il.MarkLabel(_stop);
        _il.Emit(OpCodes.Ldc_I4, Stopped);
        _il.Emit(OpCodes.Ret);
        CheckFrame();
        CheckLabels();
    }

    private void RefuseShared(IReadOnlyList<PtxStatement> body)
    {
        foreach (var statement in body)
        {
            if (statement is PtxVariableDeclaration { Variable.Space: PtxStateSpace.Shared } v)
            {
                throw Refuse(v.Line, $"a .shared variable declared in the called function {_function.Name}");
            }

            if (statement is PtxBlock b)
            {
                RefuseShared(b.Body);
            }
        }
    }

    /// <summary>The bytes of .local and .param variables a body declares, laid out as <see cref="Place"/> lays them.</summary>
    private static ulong FrameBytes(IReadOnlyList<PtxStatement> body, ulong at)
    {
        foreach (var statement in body)
        {
            switch (statement)
            {
                case PtxVariableDeclaration { Variable: { Space: PtxStateSpace.Local or PtxStateSpace.Param } v }:
                    at = Align(at, (ulong)Math.Max(v.Align, v.ElementBytes)) + (ulong)v.Bytes;
                    break;
                case PtxBlock b:
                    at = FrameBytes(b.Body, at);
                    break;
            }
        }

        return at;
    }

    /// <summary>The frame laid out while compiling is the one the callees were told of before: else a bug here.</summary>
    private void CheckFrame()
    {
        if (Align(_localBytes, 16) != _frameBytes)
        {
            throw new InvalidOperationException($"{_function.Name}: its frame came to {_localBytes} bytes, not the {_frameBytes} reckoned before");
        }
    }

    /// <summary><c>call (r…), f, (p…)</c>: f's method with pointers to the caller's param variables.</summary>
    private void EmitCall(PtxInstruction i)
    {
        var ops = i.Operands;
        var (returns, at) = ops.Count > 0 && ops[0] is PtxList r ? (r.Elements, 1) : ([], 0);
        if (at >= ops.Count || ops[at] is not PtxSymbol { Offset: 0 } target)
        {
            throw Refuse("an indirect call, through a register");
        }

        var parameters = at + 1 < ops.Count ? ops[at + 1] is PtxList p ? p.Elements : throw Refuse($"the call's argument list {ops[at + 1]}") : [];
        if (at + 2 < ops.Count)
        {
            throw Refuse("a call with a prototype or target list");
        }

        if (!_module.Functions.TryGetValue(target.Name, out var callee))
        {
            throw Refuse($"a call to {target.Name}, which the module does not declare");
        }

        if (callee.Body is null)
        {
            if (target.Name == "vprintf")
            {
                EmitPrintf(returns, parameters);
                return;
            }

            throw Refuse($"a call to {target.Name}, which the module declares but does not define");
        }

        if (parameters.Count != callee.Parameters.Count || returns.Count != callee.Returns.Count)
        {
            throw Refuse($"a call passing {parameters.Count} parameters and {returns.Count} return values to {callee.Name}, which takes {callee.Parameters.Count} and {callee.Returns.Count}");
        }

        var method = _unit.MethodFor(_module, callee);
        _unit.Calls = true;

        // The callee's frame starts where this one's ends.
        _il.Emit(OpCodes.Ldarg_0);
        LoadFrame();
        _il.Emit(OpCodes.Ldc_I8, (long)_frameBytes);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stfld, Field(nameof(LaneContext.StackTop)));

        _il.Emit(OpCodes.Ldarg_0);
        foreach (var (operand, declared) in returns.Zip(callee.Returns).Concat(parameters.Zip(callee.Parameters)))
        {
            EmitArgumentPointer(operand, declared.Bytes);
        }

        _il.Emit(OpCodes.Call, method);
        var result = _il.DeclareLocal(typeof(int));
        var goOn = _il.DefineLabel();
        _il.Emit(OpCodes.Stloc, result);
        _il.Emit(OpCodes.Ldloc, result);
        _il.Emit(OpCodes.Brfalse, goOn);
        _il.Emit(OpCodes.Ldloc, result);
        _il.Emit(OpCodes.Ret);
        _il.MarkLabel(goOn);
    }

    /// <summary>Pushes the host address of the caller's param variable that <paramref name="operand"/> names.</summary>
    private void EmitArgumentPointer(PtxOperand operand, int bytes)
    {
        if (operand is not PtxSymbol { Offset: 0 } s || !_windowVariables.TryGetValue(s.Name, out var v) || v.Space != PtxStateSpace.Local)
        {
            throw Refuse($"the call argument {operand}: the engine passes .param variables the caller declares");
        }

        if (v.Bytes < bytes)
        {
            throw Refuse($"the call argument {s.Name} of {v.Bytes} bytes for a parameter of {bytes}");
        }

        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.Local)));
        LoadAddressOf(s.Name, 0);
        _il.Emit(OpCodes.Conv_I);
        _il.Emit(OpCodes.Add);
    }

    /// <summary>This function's frame (a kernel's is at 0), as an int64.</summary>
    private void LoadFrame()
    {
        if (_frame is null)
        {
            _il.Emit(OpCodes.Ldc_I8, 0L);
        }
        else
        {
            _il.Emit(OpCodes.Ldloc, _frame);
        }
    }

    /// <summary>
    /// <c>call (ret), vprintf, (format, arguments)</c>: CUDA's device printf, the format's generic address and that of
    /// the buffer nvcc packs the arguments in; the text goes to the launch's printf output.
    /// </summary>
    private void EmitPrintf(IReadOnlyList<PtxOperand> returns, IReadOnlyList<PtxOperand> parameters)
    {
        if (parameters.Count != 2 || returns.Count > 1)
        {
            throw Refuse("a call to vprintf that does not pass a format and an argument buffer");
        }

        var site = Site();
        _il.Emit(OpCodes.Ldarg_0);
        foreach (var p in parameters)
        {
            EmitArgumentPointer(p, 8);
            _il.Emit(OpCodes.Ldind_I8);
        }

        _il.Emit(OpCodes.Ldc_I4, site);
        _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(nameof(LaneContext.Printf))!);
        if (returns.Count == 0)
        {
            _il.Emit(OpCodes.Pop);
            return;
        }

        var printed = _il.DeclareLocal(typeof(int));
        _il.Emit(OpCodes.Stloc, printed);
        EmitArgumentPointer(returns[0], 4);
        _il.Emit(OpCodes.Ldloc, printed);
        _il.Emit(OpCodes.Stind_I4);
    }
}

/// <summary>What a kernel and the functions it calls share while they compile: fault sites, cache slots, the methods.</summary>
internal sealed class CompileUnit
{
    private readonly Dictionary<string, DynamicMethod> _functions = new(StringComparer.Ordinal);

    public required string Kernel { get; init; }

    public List<string> Sites { get; } = [];

    public int CachedSites { get; set; }

    /// <summary>The kernel's static shared bytes: dynamic shared memory starts after them.</summary>
    public ulong KernelSharedBytes { get; set; }

    /// <summary>Whether the kernel calls any function (then each thread has a stack).</summary>
    public bool Calls { get; set; }

    /// <summary>The method of <paramref name="function"/>, compiled on first use (registered first, so it may call itself).</summary>
    public DynamicMethod MethodFor(ModuleLayout module, PtxFunction function)
    {
        if (_functions.TryGetValue(function.Name, out var method))
        {
            return method;
        }

        method = new DynamicMethod(
            "ptx_func_" + function.Name,
            typeof(int),
            [typeof(LaneContext), .. Enumerable.Repeat(typeof(nint), function.Returns.Count + function.Parameters.Count)],
            typeof(LaneContext).Module,
            skipVisibility: true);
        _functions[function.Name] = method;
        KernelCompiler.CompileFunction(module, function, this, method);
        return method;
    }
}
