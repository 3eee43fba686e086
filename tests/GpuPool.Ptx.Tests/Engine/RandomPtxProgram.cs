using System.Globalization;
using System.Text;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>What a register holds, by width: the reference keeps each as the low bits of a 64-bit value.</summary>
internal enum RegClass
{
    Pred,
    B16,
    B32,
    B64,
    F32,
    F64,
}

/// <summary>One register of a generated kernel: its slot in the input and output buffers, its class and its declared PTX type.</summary>
internal sealed record Reg(int Slot, RegClass Class, string Name, string DeclaredType)
{
    public int Bits => Class switch { RegClass.Pred => 1, RegClass.B16 => 16, RegClass.B32 or RegClass.F32 => 32, _ => 64 };

    public override string ToString() => Name;
}

/// <summary>An instruction's source: a register, a negated predicate (<c>!%p</c>), or an immediate.</summary>
internal abstract record Operand;

internal sealed record RegOperand(Reg Reg, bool Negated = false) : Operand
{
    public override string ToString() => (Negated ? "!" : "") + Reg.Name;
}

/// <summary>An immediate as the instruction's type reads it: integer bits, or a float rendered as 0f/0d hex.</summary>
internal sealed record Imm(ulong Bits, string Form) : Operand
{
    public override string ToString() => Form switch
    {
        "s16" or "s32" or "s64" when (long)Bits < 0 => ((long)Bits).ToString(CultureInfo.InvariantCulture),
        "f32" => "0f" + ((uint)Bits).ToString("X8", CultureInfo.InvariantCulture),
        "f64" => "0d" + Bits.ToString("X16", CultureInfo.InvariantCulture),
        _ => Bits.ToString(CultureInfo.InvariantCulture),
    };
}

/// <summary>
/// One generated instruction, kept as data so the reference interprets it without reading PTX text: the opcode, its
/// modifiers in PTX order (types included), the type the reference reads operands as (and the source type of a cvt),
/// destinations (a second one for <c>setp</c>'s <c>p|q</c>) and sources, and an optional guard.
/// </summary>
internal sealed record Instr(string Op, string[] Mods, string Type, Reg Dst, Operand[] Srcs)
{
    public string? SrcType { get; init; }

    public Reg? Dst2 { get; init; }

    public RegOperand? Guard { get; init; }

    /// <summary>Whether the instruction sets the carry flag without reading it (the generator never guards one).</summary>
    public bool StartsCarryChain { get; init; }

    /// <summary>A <c>mov</c> whose two destinations are a vector <c>{d, d2}</c> (unpack), or whose two sources are (pack).</summary>
    public bool Vector { get; init; }

    public bool Has(string modifier) => Array.IndexOf(Mods, modifier) >= 0;

    public IEnumerable<Reg> Reads()
    {
        if (Guard is not null)
        {
            yield return Guard.Reg;
        }

        foreach (var s in Srcs)
        {
            if (s is RegOperand r)
            {
                yield return r.Reg;
            }
        }

        // A guarded instruction that does not run leaves its destinations as they were: they are read too.
        if (Guard is not null)
        {
            yield return Dst;
            if (Dst2 is not null)
            {
                yield return Dst2;
            }
        }
    }

    public override string ToString()
    {
        var text = new StringBuilder();
        if (Guard is not null)
        {
            text.Append('@').Append(Guard).Append(' ');
        }

        text.Append(Op);
        foreach (var m in Mods)
        {
            text.Append('.').Append(m);
        }

        if (Vector && Dst2 is not null)
        {
            text.Append(CultureInfo.InvariantCulture, $" {{{Dst.Name}, {Dst2.Name}}}");
        }
        else
        {
            text.Append(' ').Append(Dst.Name);
            if (Dst2 is not null)
            {
                text.Append('|').Append(Dst2.Name);
            }
        }

        if (Vector && Dst2 is null)
        {
            text.Append(CultureInfo.InvariantCulture, $", {{{string.Join(", ", Srcs.Select(o => o.ToString()))}}}");
        }
        else
        {
            foreach (var s in Srcs)
            {
                text.Append(", ").Append(s);
            }
        }

        return text.Append(';').ToString();
    }
}

/// <summary>
/// A straight-line kernel run by several threads of one block: each thread loads every register from its own row of the
/// input buffer, runs the instructions, and stores every register to its own row of the output buffer.
/// </summary>
/// <param name="Inputs">One row per thread, a value per register by slot; the thread count is the number of rows.</param>
internal sealed record RandomPtxProgram(IReadOnlyList<Reg> Registers, IReadOnlyList<Instr> Instructions, IReadOnlyList<ulong[]> Inputs)
{
    /// <summary>The output buffer's poison: every slot starts as this, and a slot's bits past its register's width must stay so.</summary>
    public const ulong Poison = 0xA5A5_5A5A_C3C3_3C3CUL;

    public int Threads => Inputs.Count;

    /// <summary>Whether the program was drawn only from the forms the engine's vector code takes, so that it runs there.</summary>
    public bool ForVectorCode { get; init; }

    /// <summary>
    /// Registers (by slot) that the kernel computes instead of loading: thread t's value is Start + Stride × t in the
    /// register's width (a 32-bit integer), or Start in every thread (Stride 0: an integer, a float or a predicate).
    /// <see cref="Inputs"/> holds the same values, for the reference.
    /// </summary>
    public IReadOnlyDictionary<int, (ulong Start, ulong Stride)> Computed { get; init; } = new Dictionary<int, (ulong Start, ulong Stride)>();

    /// <summary>
    /// The carry flag before the first instruction, set in each thread by one .cc instruction of the family that reads it
    /// (from that thread's <see cref="InputRow"/>'s last slot); null leaves it unset.
    /// </summary>
    public (ulong[] PerThread, bool Borrow)? InitialCarry { get; init; }

    /// <summary>Bytes of one thread's row in the output buffer: a 64-bit slot per register.</summary>
    public int RowBytes => Registers.Count * 8;

    /// <summary>A thread's row of the input buffer: its registers' values, then its initial carry (0 when there is none).</summary>
    public ulong[] InputRow(int thread) => [.. Inputs[thread], InitialCarry?.PerThread[thread] ?? 0];

    /// <summary>The line of the kernel's text that instruction <paramref name="index"/> (from 0) is on.</summary>
    public int LineOf(int index) => Header().Count(c => c == '\n') + index + 1;

    public RandomPtxProgram Take(int count) => this with { Instructions = [.. Instructions.Take(count)] };

    public string ToPtx()
    {
        var ptx = new StringBuilder(Header());
        foreach (var i in Instructions)
        {
            ptx.Append(i).Append('\n');
        }

        foreach (var r in Registers)
        {
            var at = r.Slot * 8;
            if (r.Class == RegClass.Pred)
            {
                ptx.Append(CultureInfo.InvariantCulture, $"selp.u32 %t, 1, 0, {r.Name};\nst.global.u32 [%out_base+{at}], %t;\n");
            }
            else
            {
                ptx.Append(CultureInfo.InvariantCulture, $"st.global.b{r.Bits} [%out_base+{at}], {r.Name};\n");
            }
        }

        return ptx.Append("ret;\n}\n").ToString();
    }

    /// <summary>
    /// The kernel up to its first generated instruction: declarations, the thread's rows, and the loads of every register.
    /// Only 4-byte accesses and 32-bit registers where the program has no others, so such a program runs on the vector code.
    /// </summary>
    private string Header()
    {
        var ptx = new StringBuilder();
        ptx.Append(".version 7.8\n.target sm_80\n.address_size 64\n");
        ptx.Append(".visible .entry random_kernel(.param .u64 random_kernel_in, .param .u64 random_kernel_out)\n{\n");
        ptx.Append(".reg .b64 %in_base;\n.reg .b64 %out_base;\n.reg .b64 %row;\n.reg .b32 %t;\n.reg .b32 %tx;\n.reg .b32 %u;\n");
        foreach (var group in Registers.GroupBy(r => (r.DeclaredType, Prefix: r.Name.TrimEnd("0123456789".ToCharArray()))))
        {
            ptx.Append(CultureInfo.InvariantCulture, $".reg .{group.Key.DeclaredType} {group.Key.Prefix}<{group.Max(r => int.Parse(r.Name[group.Key.Prefix.Length..], CultureInfo.InvariantCulture)) + 1}>;\n");
        }

        ptx.Append("ld.param.u64 %in_base, [random_kernel_in];\nld.param.u64 %out_base, [random_kernel_out];\nmov.u32 %t, %tid.x;\n");
        ptx.Append(CultureInfo.InvariantCulture, $"mul.wide.u32 %row, %t, {RowBytes + 8};\nadd.s64 %in_base, %in_base, %row;\n");
        ptx.Append(CultureInfo.InvariantCulture, $"mul.wide.u32 %row, %t, {RowBytes};\nadd.s64 %out_base, %out_base, %row;\n");
        ptx.Append("mov.u32 %tx, %tid.x;\n");
        foreach (var r in Registers)
        {
            var at = r.Slot * 8;
            if (Computed.TryGetValue(r.Slot, out var c))
            {
                // %tx and %u have no other writers: %tx steps by 1 from thread to thread, %u is the same in all.
                ptx.Append(r.Class switch
                {
                    RegClass.Pred => string.Create(CultureInfo.InvariantCulture, $"mov.u32 %u, {c.Start};\nsetp.ne.u32 {r.Name}, %u, 0;\n"),
                    RegClass.F32 => string.Create(CultureInfo.InvariantCulture, $"mov.b32 {r.Name}, 0f{(uint)c.Start:X8};\n"),
                    _ when c.Stride == 0 => string.Create(CultureInfo.InvariantCulture, $"mov.b32 {r.Name}, {(uint)c.Start};\n"),
                    _ => string.Create(CultureInfo.InvariantCulture, $"mad.lo.s32 {r.Name}, %tx, {(int)(uint)c.Stride}, {(int)(uint)c.Start};\n"),
                });
            }
            else if (r.Class == RegClass.Pred)
            {
                ptx.Append(CultureInfo.InvariantCulture, $"ld.global.u32 %t, [%in_base+{at}];\nsetp.ne.u32 {r.Name}, %t, 0;\n");
            }
            else
            {
                ptx.Append(CultureInfo.InvariantCulture, $"ld.global.b{r.Bits} {r.Name}, [%in_base+{at}];\n");
            }
        }

        if (InitialCarry is { } carry)
        {
            // The row's last slot is 0 or 1: 0xFFFFFFFF plus it carries when it is 1; 0 minus it borrows when it is 1.
            ptx.Append(CultureInfo.InvariantCulture, $"ld.global.u32 %t, [%in_base+{RowBytes}];\n");
            ptx.Append(carry.Borrow ? "sub.cc.u32 %t, 0, %t;\n" : "add.cc.u32 %t, %t, 4294967295;\n");
        }

        return ptx.ToString();
    }
}
