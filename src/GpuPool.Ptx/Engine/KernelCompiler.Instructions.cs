using System.Reflection;
using System.Reflection.Emit;
using GpuPool.Ptx.Semantics;
using GpuPool.Ptx.Syntax;
using PtxConvert = GpuPool.Ptx.Semantics.Convert;

namespace GpuPool.Ptx.Engine;

/// <summary>Instructions, one IL sequence each; an instruction or form not handled here is refused when the module loads.</summary>
internal sealed partial class KernelCompiler
{
    private static readonly string[] Types =
        ["pred", "b8", "u8", "s8", "b16", "u16", "s16", "f16", "bf16", "b32", "u32", "s32", "f32", "f16x2", "bf16x2", "tf32", "b64", "u64", "s64", "f64", "b128"];

    private void EmitInstruction(PtxInstruction i)
    {
        switch (i.Opcode)
        {
            case "mov":
                EmitMov(i);
                break;
            case "ld" or "ldu":
                EmitLoadMemory(i);
                break;
            case "st":
                EmitStoreMemory(i);
                break;
            case "add" or "sub" or "mul" or "div" or "rem" or "min" or "max" or "and" or "or" or "xor" or "addc" or "subc" or "copysign":
                EmitBinary(i);
                break;
            case "mad" or "fma" or "madc":
                EmitMad(i);
                break;
            case "sad":
                EmitSad(i);
                break;
            case "mul24" or "mad24":
                EmitMul24(i);
                break;
            case "neg" or "abs" or "not" or "cnot" or "popc" or "clz" or "brev":
                EmitUnary(i);
                break;
            case "shl" or "shr":
                EmitShift(i);
                break;
            case "rcp" or "sqrt" or "rsqrt" or "ex2" or "lg2" or "sin" or "cos" or "tanh":
                EmitMath(i);
                break;
            case "setp":
                EmitSetp(i);
                break;
            case "testp":
                EmitTestp(i);
                break;
            case "set":
                EmitSet(i);
                break;
            case "dp4a" or "dp2a":
                EmitDotProduct(i);
                break;
            case "selp":
                EmitSelp(i);
                break;
            case "slct":
                EmitSlct(i);
                break;
            case "cvt":
                EmitCvt(i);
                break;
            case "cvta":
                EmitCvta(i);
                break;
            case "bfe" or "bfi" or "prmt" or "bfind":
                EmitBits(i);
                break;
            case "atom" or "red":
                EmitAtomic(i);
                break;
            case "bra":
                var target = Symbol(i.Operands[0]);
                if (_marked.Contains(target))
                {
                    // Only a branch back can make a loop: that is where a launch past its deadline stops.
                    EmitStopCheck();
                }

                _il.Emit(OpCodes.Br, LabelOf(target));
                break;
            case "ret" or "exit":
                // A called function's ret returns to its caller; exit ends the thread wherever it is.
                _il.Emit(OpCodes.Ldc_I4, i.Opcode == "ret" && !_isKernel ? Returned : Exited);
                _il.Emit(OpCodes.Ret);
                break;
            case "call":
                EmitCall(i);
                break;
            case "bar" or "barrier":
                EmitBarrier(i);
                break;
            case "shfl":
                RequireOperands(i, 5);
                EmitCollective(new CollectiveSite(SiteKind.Shuffle, ModeOf(i, "up", "down", "bfly", "idx"), "b32",
                    Pair(i.Operands[0]), [SiteSource(i.Operands[1]), SiteSource(i.Operands[2]), SiteSource(i.Operands[3]), SiteSource(i.Operands[4])], Where()));
                break;
            case "vote":
                RequireOperands(i, 3);
                EmitCollective(new CollectiveSite(SiteKind.Vote, ModeOf(i, "all", "any", "uni", "ballot"), "b32",
                    [SiteDest(i.Operands[0])], [SiteSource(i.Operands[1]), SiteSource(i.Operands[2])], Where()));
                break;
            case "match":
                RequireOperands(i, 3);
                EmitCollective(new CollectiveSite(SiteKind.Match, ModeOf(i, "any", "all"), TypeOf(i),
                    Pair(i.Operands[0]), [SiteSource(i.Operands[1]), SiteSource(i.Operands[2])], Where()));
                break;
            case "redux":
                RequireOperands(i, 3);
                EmitCollective(new CollectiveSite(SiteKind.Redux, ModeOf(i, "add", "min", "max", "and", "or", "xor"), TypeOf(i),
                    [SiteDest(i.Operands[0])], [SiteSource(i.Operands[1]), SiteSource(i.Operands[2])], Where()));
                break;
            case "activemask":
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(nameof(LaneContext.ActiveMask))!);
                Store(i.Operands[0], "b32");
                break;
            case "membar" or "fence":
                _il.Emit(OpCodes.Call, typeof(Interlocked).GetMethod(nameof(Interlocked.MemoryBarrier))!);
                break;
            case "prefetch" or "prefetchu" or "nanosleep" or "pmevent" or "brkpt":
                break;
            case "trap":
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldc_I4, Site());
                _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(nameof(LaneContext.Trap))!);
                break;
            default:
                throw Refuse($"the instruction {i.Opcode}");
        }
    }

    // ---- operands ------------------------------------------------------------------------------------------------

    /// <summary>The instruction's (last) type modifier.</summary>
    private string TypeOf(PtxInstruction i)
        => i.Modifiers.LastOrDefault(m => Types.Contains(m)) ?? throw Refuse("an instruction without a type");

    private static bool IsFloat(string type) => type is "f32" or "f64";

    private static bool IsSigned(string type) => type is "s8" or "s16" or "s32" or "s64";

    private static int BitsOf(string type) => PtxTypes.SizeOf(type) * 8;

    private void RequireOperands(PtxInstruction i, int count)
    {
        if (i.Operands.Count != count)
        {
            throw Refuse($"{i.Opcode} with {i.Operands.Count} operands");
        }
    }

    private string Symbol(PtxOperand operand) => operand is PtxSymbol { Offset: 0 } s ? s.Name : throw Refuse($"the branch target {operand}");

    private string ModeOf(PtxInstruction i, params string[] modes)
        => i.Modifiers.FirstOrDefault(modes.Contains) ?? throw Refuse($"{i.Opcode} without one of .{string.Join("/.", modes)}");

    /// <summary>A destination that may be a pair <c>%d|%p</c>: both, the second a sink when absent.</summary>
    private SiteOperand[] Pair(PtxOperand operand) => operand is PtxPredicatePair pair
        ? [SiteDest(pair.First), SiteDest(pair.Second)]
        : [SiteDest(operand), SiteOperand.Sink];

    /// <summary>Pushes <paramref name="operand"/> as a value of <paramref name="type"/>.</summary>
    private void Load(PtxOperand operand, string type)
    {
        var kind = KindOf(type, _current.Line);
        switch (operand)
        {
            case PtxRegister r when r.Name.StartsWith('%') && Find(r.Name) is null:
                LoadSpecial(r.Name, kind);
                return;
            case PtxRegister r:
                LoadRegister(r.Name, kind, IsSigned(type));
                Narrow(type);
                return;
            case PtxNot { Operand: PtxRegister r }:
                LoadRegister(r.Name, Kind.I32);
                _il.Emit(OpCodes.Ldc_I4_1);
                _il.Emit(OpCodes.Xor);
                return;
            case PtxInteger n:
                switch (kind)
                {
                    case Kind.I32:
                        _il.Emit(OpCodes.Ldc_I4, unchecked((int)n.Value));
                        Narrow(type);
                        break;
                    case Kind.I64:
                        _il.Emit(OpCodes.Ldc_I8, n.Value);
                        break;
                    case Kind.F32:
                        _il.Emit(OpCodes.Ldc_R4, (float)n.Value);
                        break;
                    default:
                        _il.Emit(OpCodes.Ldc_R8, (double)n.Value);
                        break;
                }

                return;
            case PtxFloat f:
                switch (kind)
                {
                    case Kind.F32:
                        _il.Emit(OpCodes.Ldc_R4, (float)f.Value);
                        break;
                    case Kind.F64:
                        _il.Emit(OpCodes.Ldc_R8, f.Value);
                        break;
                    case Kind.I32:
                        _il.Emit(OpCodes.Ldc_I4, f.Single ? BitConverter.SingleToInt32Bits((float)f.Value) : unchecked((int)BitConverter.DoubleToInt64Bits(f.Value)));
                        break;
                    default:
                        _il.Emit(OpCodes.Ldc_I8, f.Single ? BitConverter.SingleToInt32Bits((float)f.Value) : BitConverter.DoubleToInt64Bits(f.Value));
                        break;
                }

                return;
            case PtxSymbol s:
                LoadAddressOf(s.Name, s.Offset);
                Convert(Kind.I64, kind, signed: false);
                return;
            default:
                throw Refuse($"the operand {operand}");
        }
    }

    private void LoadRegister(string name, Kind want, bool signed = false)
    {
        var r = RegisterOf(name);
        _il.Emit(OpCodes.Ldloc, r.Local);
        Convert(r.Kind, want, signed);
    }

    /// <summary>Stores the value of <paramref name="type"/> on the stack into <paramref name="operand"/>.</summary>
    private void Store(PtxOperand operand, string type)
    {
        var kind = KindOf(type, _current.Line);
        switch (operand)
        {
            case PtxSink:
                _il.Emit(OpCodes.Pop);
                return;
            case PtxRegister r:
                var register = RegisterOf(r.Name);
                Convert(kind, register.Kind, IsSigned(type));
                _il.Emit(OpCodes.Stloc, register.Local);
                return;
            default:
                throw Refuse($"the destination {operand}");
        }
    }

    /// <summary>Keeps the low bits a type of under 32 bits has, zero- or sign-extended as the type is.</summary>
    private void Narrow(string type)
    {
        switch (type)
        {
            case "s8":
                _il.Emit(OpCodes.Conv_I1);
                break;
            case "u8" or "b8":
                _il.Emit(OpCodes.Conv_U1);
                break;
            case "s16":
                _il.Emit(OpCodes.Conv_I2);
                break;
            case "u16" or "b16" or "f16" or "bf16":
                _il.Emit(OpCodes.Conv_U2);
                break;
        }
    }

    /// <summary>A value as another kind: bits kept between integer and float of one size, integers widened or cut.</summary>
    private void Convert(Kind from, Kind to, bool signed)
    {
        if (from == to)
        {
            return;
        }

        switch (from, to)
        {
            case (Kind.I32, Kind.I64):
                _il.Emit(signed ? OpCodes.Conv_I8 : OpCodes.Conv_U8);
                break;
            case (Kind.I64, Kind.I32):
                _il.Emit(OpCodes.Conv_I4);
                break;
            case (Kind.I32, Kind.F32):
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.Int32BitsToSingle))!);
                break;
            case (Kind.F32, Kind.I32):
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.SingleToInt32Bits))!);
                break;
            case (Kind.I64, Kind.F64):
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.Int64BitsToDouble))!);
                break;
            case (Kind.F64, Kind.I64):
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.DoubleToInt64Bits))!);
                break;
            case (Kind.F32, Kind.I64):
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.SingleToInt32Bits))!);
                _il.Emit(OpCodes.Conv_U8);
                break;
            case (Kind.I64, Kind.F32):
                _il.Emit(OpCodes.Conv_I4);
                _il.Emit(OpCodes.Call, typeof(BitConverter).GetMethod(nameof(BitConverter.Int32BitsToSingle))!);
                break;
            default:
                throw Refuse($"a {from} register used as {to}");
        }
    }

    private void LoadSpecial(string name, Kind kind)
    {
        var field = name switch
        {
            "%tid.x" => nameof(LaneContext.TidX),
            "%tid.y" => nameof(LaneContext.TidY),
            "%tid.z" => nameof(LaneContext.TidZ),
            "%ntid.x" => nameof(LaneContext.NtidX),
            "%ntid.y" => nameof(LaneContext.NtidY),
            "%ntid.z" => nameof(LaneContext.NtidZ),
            "%ctaid.x" => nameof(LaneContext.CtaX),
            "%ctaid.y" => nameof(LaneContext.CtaY),
            "%ctaid.z" => nameof(LaneContext.CtaZ),
            "%nctaid.x" => nameof(LaneContext.NctaX),
            "%nctaid.y" => nameof(LaneContext.NctaY),
            "%nctaid.z" => nameof(LaneContext.NctaZ),
            _ => null,
        };
        if (field is not null)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, Field(field));
            Convert(Kind.I32, kind, signed: false);
            return;
        }

        switch (name)
        {
            case "%laneid" or "%warpid" or "%lanemask_eq" or "%lanemask_lt" or "%lanemask_le" or "%lanemask_gt" or "%lanemask_ge":
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.Lane)));
                _il.Emit(OpCodes.Call, typeof(Lanes).GetMethod(name[1..].Replace("_", "", StringComparison.Ordinal), BindingFlags.Public | BindingFlags.Static | BindingFlags.IgnoreCase)!);
                Convert(Kind.I32, kind, signed: false);
                break;
            case "%clock" or "%clock64" or "%globaltimer" or "%globaltimer_lo":
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(name switch
                {
                    "%clock" => nameof(LaneContext.Clock),
                    "%clock64" => nameof(LaneContext.Clock64),
                    _ => nameof(LaneContext.GlobalTimer),
                })!);
                Convert(name == "%clock" ? Kind.I32 : Kind.I64, kind, signed: false);
                break;
            case "%nwarpid" or "%nsmid" or "%smid" or "%gridid" or "%warpsize" or "WARP_SZ":
                _il.Emit(OpCodes.Ldc_I4, name switch { "%nwarpid" => 32, "%nsmid" => 1, "%warpsize" or "WARP_SZ" => 32, _ => 0 });
                Convert(Kind.I32, kind, signed: false);
                break;
            default:
                throw Refuse($"the special register {name}");
        }
    }

    /// <summary>The address a name stands for: a module variable's device address, or a window variable's offset.</summary>
    private void LoadAddressOf(string name, long offset)
    {
        if (_windowVariables.TryGetValue(name, out var window))
        {
            if (window.Argument > 0)
            {
                throw Refuse($"the address of a called function's parameter {name}");
            }

            _il.Emit(OpCodes.Ldc_I8, (long)window.Offset + offset);
            if (window.Space == PtxStateSpace.Local && _frame is not null)
            {
                // A called function's local variables lie in its frame on the thread's stack.
                _il.Emit(OpCodes.Ldloc, _frame);
                _il.Emit(OpCodes.Add);
            }

            return;
        }

        if (_module.Globals.TryGetValue(name, out var index))
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldfld, SymbolsField);
            _il.Emit(OpCodes.Ldc_I4, index);
            _il.Emit(OpCodes.Ldelem_I8);
            if (offset != 0)
            {
                _il.Emit(OpCodes.Ldc_I8, offset);
                _il.Emit(OpCodes.Add);
            }

            return;
        }

        throw Refuse($"the symbol {name}");
    }

    private void EmitStopCheck()
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.Control)));
        _il.Emit(OpCodes.Volatile);
        _il.Emit(OpCodes.Ldfld, typeof(LaunchControl).GetField(nameof(LaunchControl.Stop))!);
        _il.Emit(OpCodes.Brtrue, _stop);
    }

    private static MethodInfo Method(Type type, string name, params Type[] parameters)
        => type.GetMethod(name, BindingFlags.Public | BindingFlags.Static, parameters)
            ?? throw new InvalidOperationException($"{type.Name}.{name}({string.Join(", ", parameters.Select(p => p.Name))}) is missing");

    private void Call(Type type, string name, params Type[] parameters) => _il.Emit(OpCodes.Call, Method(type, name, parameters));

    /// <summary>The .NET type a PTX type's value has when passed to a semantics method.</summary>
    private static Type ClrType(string type) => type switch
    {
        "s8" => typeof(sbyte),
        "u8" or "b8" => typeof(byte),
        "s16" => typeof(short),
        "u16" or "b16" => typeof(ushort),
        "s32" => typeof(int),
        "u32" or "b32" or "pred" => typeof(uint),
        "s64" => typeof(long),
        "u64" or "b64" => typeof(ulong),
        "f32" => typeof(float),
        "f64" => typeof(double),
        _ => throw new ArgumentException(type),
    };

    private FloatRounding Rounding(PtxInstruction i)
        => i.Has("rz") ? FloatRounding.Rz : i.Has("rm") ? FloatRounding.Rm : i.Has("rp") ? FloatRounding.Rp : FloatRounding.Rn;

    private IntRounding? IntRoundingOf(PtxInstruction i)
        => i.Has("rni") ? IntRounding.Rni : i.Has("rzi") ? IntRounding.Rzi : i.Has("rmi") ? IntRounding.Rmi : i.Has("rpi") ? IntRounding.Rpi : null;

    private Type FloatOps(string type) => type == "f32" ? typeof(Fp32) : typeof(Fp64);

    /// <summary>Loads a float operand, flushed to zero when the instruction says .ftz.</summary>
    private void LoadFloat(PtxInstruction i, PtxOperand operand, string type)
    {
        Load(operand, type);
        if (i.Has("ftz"))
        {
            Call(FloatOps(type), "Ftz", ClrType(type));
        }
    }

    /// <summary>Stores a float result after .sat and .ftz.</summary>
    private void StoreFloat(PtxInstruction i, PtxOperand operand, string type)
    {
        if (i.Has("sat"))
        {
            Call(FloatOps(type), "Saturate", ClrType(type));
        }

        if (i.Has("ftz"))
        {
            Call(FloatOps(type), "Ftz", ClrType(type));
        }

        Store(operand, type);
    }

    // ---- data movement -------------------------------------------------------------------------------------------

    private void EmitMov(PtxInstruction i)
    {
        RequireOperands(i, 2);
        var type = TypeOf(i);
        var (dst, src) = (i.Operands[0], i.Operands[1]);
        if (src is PtxVector pack)
        {
            // mov.b64 %rd, {%r1, %r2}: the elements, first in the low bits.
            var bits = BitsOf(type) / pack.Elements.Count;
            var part = bits == 32 ? "b32" : bits == 16 ? "b16" : bits == 8 ? "b8" : throw Refuse("a vector of that width");
            var wide = BitsOf(type) == 64;
            for (var e = 0; e < pack.Elements.Count; e++)
            {
                Load(pack.Elements[e], part);
                if (wide)
                {
                    _il.Emit(OpCodes.Conv_U8);
                    if (bits < 32)
                    {
                        _il.Emit(OpCodes.Ldc_I8, (1L << bits) - 1);
                        _il.Emit(OpCodes.And);
                    }
                }

                if (e > 0)
                {
                    _il.Emit(OpCodes.Ldc_I4, e * bits);
                    _il.Emit(OpCodes.Shl);
                    _il.Emit(OpCodes.Or);
                }
            }

            Store(dst, BitsOf(type) == 64 ? "b64" : "b32");
            return;
        }

        if (dst is PtxVector unpack)
        {
            var bits = BitsOf(type) / unpack.Elements.Count;
            var part = bits == 32 ? "b32" : bits == 16 ? "b16" : bits == 8 ? "b8" : throw Refuse("a vector of that width");
            var whole = BitsOf(type) == 64 ? "b64" : "b32";
            for (var e = 0; e < unpack.Elements.Count; e++)
            {
                if (unpack.Elements[e] is PtxSink)
                {
                    continue;
                }

                Load(src, whole);
                if (e > 0)
                {
                    _il.Emit(OpCodes.Ldc_I4, e * bits);
                    _il.Emit(OpCodes.Shr_Un);
                }

                if (whole == "b64")
                {
                    _il.Emit(OpCodes.Conv_I4);
                }

                Narrow(part);
                Store(unpack.Elements[e], part == "b8" ? "b16" : part);
            }

            return;
        }

        Load(src, type);
        Store(dst, type);
    }

    /// <summary>The state space an ld/st/atom names (none: generic).</summary>
    private static PtxStateSpace SpaceOf(PtxInstruction i)
    {
        foreach (var m in i.Modifiers)
        {
            switch (m)
            {
                case "global":
                    return PtxStateSpace.Global;
                case "shared":
                    return PtxStateSpace.Shared;
                case "local":
                    return PtxStateSpace.Local;
                case "param":
                    return PtxStateSpace.Param;
                case "const":
                    return PtxStateSpace.Const;
            }
        }

        return PtxStateSpace.None;
    }

    private static int VectorOf(PtxInstruction i) => i.Has("v2") ? 2 : i.Has("v4") ? 4 : i.Has("v8") ? 8 : 1;

    /// <summary>Pushes the checked host pointer of a memory operand of <paramref name="size"/> bytes.</summary>
    private void EmitPointer(PtxOperand operand, PtxStateSpace space, int size)
    {
        if (operand is not PtxAddress address)
        {
            throw Refuse($"the memory operand {operand}");
        }

        var site = Site();
        _il.Emit(OpCodes.Ldarg_0);
        switch (address.Base)
        {
            case null:
                _il.Emit(OpCodes.Ldc_I8, address.Offset);
                break;
            case PtxSymbol s when _windowVariables.TryGetValue(s.Name, out var argument) && argument.Argument > 0:
                // A called function's parameter or return value: its caller's variable, at an offset checked here.
                var at = s.Offset + address.Offset;
                if (at < 0 || at + size > argument.Bytes)
                {
                    throw Refuse($"a {size}-byte access at offset {at} of the {argument.Bytes}-byte parameter {s.Name}");
                }

                _il.Emit(OpCodes.Pop);
                _il.Emit(OpCodes.Ldarg, (short)argument.Argument);
                _il.Emit(OpCodes.Ldc_I4, (int)at);
                _il.Emit(OpCodes.Add);
                return;
            case PtxSymbol s when _windowVariables.TryGetValue(s.Name, out var fixedWindow) && fixedWindow.Space == PtxStateSpace.Param
                && StaticParamAccess(fixedWindow.Offset + (ulong)(s.Offset + address.Offset), size) is { } paramOffset:
                // A kernel parameter at a constant offset: checked here, once.
                _il.Emit(OpCodes.Pop);
                _il.Emit(OpCodes.Ldarg_0);
                _il.Emit(OpCodes.Ldfld, Field(nameof(LaneContext.Params)));
                _il.Emit(OpCodes.Ldc_I4, (int)paramOffset);
                _il.Emit(OpCodes.Add);
                return;
            case PtxSymbol s:
                LoadAddressOf(s.Name, s.Offset + address.Offset);
                if (_windowVariables.TryGetValue(s.Name, out var window))
                {
                    space = window.Space;
                }
                else if (space == PtxStateSpace.None)
                {
                    space = PtxStateSpace.Global;
                }

                break;
            case PtxRegister r:
                var register = RegisterOf(r.Name);
                _il.Emit(OpCodes.Ldloc, register.Local);
                Convert(register.Kind, Kind.I64, signed: false);
                if (address.Offset != 0)
                {
                    _il.Emit(OpCodes.Ldc_I8, address.Offset);
                    _il.Emit(OpCodes.Add);
                }

                break;
            default:
                throw Refuse($"the memory operand {operand}");
        }

        if (space is PtxStateSpace.Global or PtxStateSpace.Const or PtxStateSpace.None)
        {
            EmitCachedCheck(size, site, space == PtxStateSpace.None ? nameof(LaneContext.GenericMiss) : nameof(LaneContext.GlobalMiss));
            return;
        }

        _il.Emit(OpCodes.Ldc_I4, size);
        _il.Emit(OpCodes.Ldc_I4, site);
        _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(space switch
        {
            PtxStateSpace.Shared => nameof(LaneContext.SharedAt),
            PtxStateSpace.Local => nameof(LaneContext.LocalAt),
            _ => nameof(LaneContext.ParamAt),
        })!);
    }

    /// <summary>
    /// With the context and the address on the stack: the address itself when it lies, aligned, in the allocation the
    /// last access fell in (the method keeps that range in two locals), else what the miss helper says (it checks the
    /// lease's allocations, faults, or returns the address and remembers its allocation, which the locals then take).
    /// </summary>
    private void EmitCachedCheck(int size, int site, string miss)
    {
        var slot = 2 * _unit.CachedSites++;
        var cache = CacheLocal();
        var address = _il.DeclareLocal(typeof(long));
        var offset = _il.DeclareLocal(typeof(long));
        var span = _il.DeclareLocal(typeof(long));
        var slow = _il.DefineLabel();
        var done = _il.DefineLabel();
        _il.Emit(OpCodes.Stloc, address);
        _il.Emit(OpCodes.Pop);

        // offset = address - start; offset < span && span - offset >= size && (address & (size - 1)) == 0
        _il.Emit(OpCodes.Ldloc, cache);
        _il.Emit(OpCodes.Ldc_I4, slot + 1);
        _il.Emit(OpCodes.Ldelem_I8);
        _il.Emit(OpCodes.Stloc, span);
        _il.Emit(OpCodes.Ldloc, address);
        _il.Emit(OpCodes.Ldloc, cache);
        _il.Emit(OpCodes.Ldc_I4, slot);
        _il.Emit(OpCodes.Ldelem_I8);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Stloc, offset);
        _il.Emit(OpCodes.Ldloc, offset);
        _il.Emit(OpCodes.Ldloc, span);
        _il.Emit(OpCodes.Bge_Un, slow);
        _il.Emit(OpCodes.Ldloc, span);
        _il.Emit(OpCodes.Ldloc, offset);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Ldc_I8, (long)size);
        _il.Emit(OpCodes.Blt_Un, slow);
        if (size > 1)
        {
            _il.Emit(OpCodes.Ldloc, address);
            _il.Emit(OpCodes.Ldc_I8, (long)(size - 1));
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Brtrue, slow);
        }

        _il.Emit(OpCodes.Ldloc, address);
        _il.Emit(OpCodes.Conv_I);
        _il.Emit(OpCodes.Br, done);

        _il.MarkLabel(slow);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldloc, address);
        _il.Emit(OpCodes.Ldc_I4, size);
        _il.Emit(OpCodes.Ldc_I4, site);
        _il.Emit(OpCodes.Ldc_I4, slot);
        _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(miss)!);
        _il.MarkLabel(done);
    }

    /// <summary>The local that holds the context's site cache, loaded where the method starts and where it resumes.</summary>
    private LocalBuilder CacheLocal() => _cacheLocal ??= _il.DeclareLocal(typeof(long[]));

    /// <summary>An access of <paramref name="size"/> bytes at a constant offset of the parameters, if it lies inside them.</summary>
    private ulong? StaticParamAccess(ulong offset, int size)
        => offset + (ulong)size <= (ulong)ParameterLayout(_function).Bytes ? offset : null;

    private void EmitLoadMemory(PtxInstruction i)
    {
        var type = TypeOf(i);
        var n = VectorOf(i);
        var size = PtxTypes.SizeOf(type);
        EmitPointer(i.Operands[1], SpaceOf(i), size * n);
        var dests = n == 1 ? [i.Operands[0]] : ((PtxVector)i.Operands[0]).Elements;
        var pointer = _il.DeclareLocal(typeof(nint));
        _il.Emit(OpCodes.Stloc, pointer);
        for (var e = 0; e < n; e++)
        {
            if (dests[e] is PtxSink)
            {
                continue;
            }

            _il.Emit(OpCodes.Ldloc, pointer);
            if (e > 0)
            {
                _il.Emit(OpCodes.Ldc_I4, e * size);
                _il.Emit(OpCodes.Add);
            }

            _il.Emit(type switch
            {
                "s8" => OpCodes.Ldind_I1,
                "u8" or "b8" => OpCodes.Ldind_U1,
                "s16" => OpCodes.Ldind_I2,
                "u16" or "b16" or "f16" or "bf16" => OpCodes.Ldind_U2,
                "s32" or "u32" or "b32" or "f16x2" or "bf16x2" => OpCodes.Ldind_I4,
                "f32" => OpCodes.Ldind_R4,
                "f64" => OpCodes.Ldind_R8,
                "s64" or "u64" or "b64" => OpCodes.Ldind_I8,
                _ => throw Refuse($"a load of .{type}"),
            });
            Store(dests[e], type);
        }
    }

    private void EmitStoreMemory(PtxInstruction i)
    {
        var type = TypeOf(i);
        var n = VectorOf(i);
        var size = PtxTypes.SizeOf(type);
        EmitPointer(i.Operands[0], SpaceOf(i), size * n);
        var sources = n == 1 ? [i.Operands[1]] : ((PtxVector)i.Operands[1]).Elements;
        var pointer = _il.DeclareLocal(typeof(nint));
        _il.Emit(OpCodes.Stloc, pointer);
        for (var e = 0; e < n; e++)
        {
            _il.Emit(OpCodes.Ldloc, pointer);
            if (e > 0)
            {
                _il.Emit(OpCodes.Ldc_I4, e * size);
                _il.Emit(OpCodes.Add);
            }

            Load(sources[e], type);
            _il.Emit(type switch
            {
                "s8" or "u8" or "b8" => OpCodes.Stind_I1,
                "s16" or "u16" or "b16" or "f16" or "bf16" => OpCodes.Stind_I2,
                "s32" or "u32" or "b32" or "f16x2" or "bf16x2" => OpCodes.Stind_I4,
                "f32" => OpCodes.Stind_R4,
                "f64" => OpCodes.Stind_R8,
                "s64" or "u64" or "b64" => OpCodes.Stind_I8,
                _ => throw Refuse($"a store of .{type}"),
            });
        }
    }

    private void EmitCvta(PtxInstruction i)
    {
        RequireOperands(i, 2);
        var type = i.Has("u32") ? "u32" : "u64";
        var to = i.Has("to");
        var space = SpaceOf(i);
        Load(i.Operands[1], type);
        if (type == "u32")
        {
            _il.Emit(OpCodes.Conv_U8);
        }

        var helper = (space, to) switch
        {
            (PtxStateSpace.Global or PtxStateSpace.Const, _) => null,
            (PtxStateSpace.Shared, false) => nameof(LaneContext.SharedToGeneric),
            (PtxStateSpace.Shared, true) => nameof(LaneContext.GenericToShared),
            (PtxStateSpace.Local, false) => nameof(LaneContext.LocalToGeneric),
            (PtxStateSpace.Local, true) => nameof(LaneContext.GenericToLocal),
            (PtxStateSpace.Param, false) => nameof(LaneContext.ParamToGeneric),
            (PtxStateSpace.Param, true) => nameof(LaneContext.GenericToParam),
            _ => throw Refuse("cvta without a state space"),
        };
        if (helper is not null)
        {
            var value = _il.DeclareLocal(typeof(long));
            _il.Emit(OpCodes.Stloc, value);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, value);
            _il.Emit(OpCodes.Call, typeof(LaneContext).GetMethod(helper)!);
        }

        if (type == "u32")
        {
            _il.Emit(OpCodes.Conv_I4);
        }

        Store(i.Operands[0], type);
    }
}

/// <summary>The lane-derived special registers, from a thread's index in its block.</summary>
internal static class Lanes
{
    public static int LaneId(int lane) => lane & 31;

    public static int WarpId(int lane) => lane >> 5;

    public static int LaneMaskEq(int lane) => 1 << (lane & 31);

    public static int LaneMaskLt(int lane) => (1 << (lane & 31)) - 1;

    public static int LaneMaskLe(int lane) => (int)((2UL << (lane & 31)) - 1);

    public static int LaneMaskGt(int lane) => ~LaneMaskLe(lane);

    public static int LaneMaskGe(int lane) => ~LaneMaskLt(lane);
}
