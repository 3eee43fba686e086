using System.Globalization;
using System.Text;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Runs a generated program on the engine and on the reference and, where the outputs differ, finds the first instruction
/// whose result differs (the engine rerun on each prefix of the program) and the smallest program that still fails: that
/// one instruction alone, its registers loaded with the values the reference held just before it.
/// </summary>
internal static class RandomPtxChecker
{
    /// <summary>Null when the engine and the reference agree on every register; else a report naming the seed, the instruction and both values.</summary>
    public static string? Check(RandomPtxProgram program, string seed, string? wrongOp = null)
    {
        var (states, carries) = Reference(program, wrongOp);
        if (Differences(program, Run(program), states[^1]) is null)
        {
            return null;
        }

        // The first prefix whose registers differ ends with the instruction that went wrong (the prologue and epilogue alone for 0).
        var k = 0;
        while (k <= program.Instructions.Count && Differences(program.Take(k), Run(program.Take(k)), states[k]) is null)
        {
            k++;
        }

        var report = new StringBuilder();
        report.Append(CultureInfo.InvariantCulture, $"random PTX program {seed}: the engine and the reference differ");
        if (k > program.Instructions.Count)
        {
            // Every prefix agreed but the whole did not: cannot be for straight-line code; report the whole program.
            return report.Append(" only for the whole program\n").Append(program.ToPtx()).ToString();
        }

        if (k == 0)
        {
            return report.Append(" with no instruction at all (loading and storing the registers)\n")
                .Append(Differences(program.Take(0), Run(program.Take(0)), states[0])).Append('\n').Append(program.Take(0).ToPtx()).ToString();
        }

        var i = program.Instructions[k - 1];
        report.Append(CultureInfo.InvariantCulture, $" first at instruction {k} of {program.Instructions.Count} (line {program.LineOf(k - 1)}): `{i}`\n");
        report.Append("  its inputs: ").AppendJoin(", ", i.Reads().Distinct().Select(r => $"{r} = {Show(r, states[k - 1][r.Slot])}"));
        if (i.Op is "addc" or "subc" or "madc")
        {
            report.Append(CultureInfo.InvariantCulture, $", CC.CF = {carries[k - 1]} (set by the last .cc instruction before it)");
        }

        report.Append('\n');
        report.Append("  ").Append(Differences(program.Take(k), Run(program.Take(k)), states[k])).Append('\n');

        // The smallest program: the one instruction, its registers loaded with what the reference held before it.
        var alone = Alone(i, states[k - 1]) with
        {
            InitialCarry = i.Op is "addc" or "subc" or "madc" ? (carries[k - 1], i.Op == "subc") : null,
        };
        var (aloneStates, _) = Reference(alone, wrongOp);
        var aloneDiff = Differences(alone, Run(alone), aloneStates[^1]);
        if (aloneDiff is not null)
        {
            report.Append("minimal failing program (the instruction alone, inputs as above):\n").Append(alone.ToPtx());
        }
        else
        {
            // The instruction needs what came before it: drop every earlier instruction the failure does not need.
            var prefix = program.Take(k);
            for (var j = k - 2; j >= 0; j--)
            {
                var shorter = prefix with { Instructions = [.. prefix.Instructions.Where((_, n) => n != j)] };
                var (shorterStates, _) = Reference(shorter, wrongOp);
                if (Differences(shorter, Run(shorter), shorterStates[^1]) is not null)
                {
                    prefix = shorter;
                }
            }

            var read = prefix.Instructions.SelectMany(x => x.Reads()).Distinct().OrderBy(r => r.Slot);
            report.Append("the instruction alone agrees; the smallest failing program found is the instructions it needs, with the inputs ")
                .AppendJoin(", ", read.Select(r => $"{r} = {Show(r, prefix.Inputs[r.Slot])}")).Append(":\n").Append(prefix.ToPtx());
        }

        return report.ToString();
    }

    /// <summary>A program of one instruction over only the registers it touches, loaded with <paramref name="values"/> (by old slot).</summary>
    public static RandomPtxProgram Alone(Instr i, ulong[] values)
    {
        var touched = i.Reads().Append(i.Dst).Concat(i.Dst2 is null ? [] : [i.Dst2]).Distinct().OrderBy(r => r.Slot).ToArray();
        var map = touched.Select((r, k) => (r, New: r with { Slot = k })).ToDictionary(x => x.r, x => x.New);
        Operand Remap(Operand o) => o is RegOperand ro ? ro with { Reg = map[ro.Reg] } : o;
        var moved = i with
        {
            Dst = map[i.Dst],
            Dst2 = i.Dst2 is null ? null : map[i.Dst2],
            Guard = i.Guard is null ? null : i.Guard with { Reg = map[i.Guard.Reg] },
            Srcs = [.. i.Srcs.Select(Remap)],
        };
        return new RandomPtxProgram([.. map.Values], [moved], [.. touched.Select(r => values[r.Slot])]);
    }

    /// <summary>The reference's registers and carry flag before the first instruction and after each.</summary>
    private static (ulong[][] States, ulong[] Carries) Reference(RandomPtxProgram program, string? wrongOp)
    {
        var evaluator = new PtxReferenceEvaluator(program, wrongOp);
        var states = new ulong[program.Instructions.Count + 1][];
        var carries = new ulong[program.Instructions.Count + 1];
        states[0] = [.. evaluator.Values];
        for (var k = 0; k < program.Instructions.Count; k++)
        {
            evaluator.Execute(program.Instructions[k]);
            states[k + 1] = [.. evaluator.Values];
            carries[k + 1] = evaluator.Carry;
        }

        return (states, carries);
    }

    /// <summary>The output buffer after the engine ran the program, or the engine's exception.</summary>
    private static (ulong[]? Outputs, Exception? Error) Run(RandomPtxProgram program)
    {
        using var memory = new HostMemory();
        var input = memory.Upload(program.Inputs);
        var output = memory.Upload(Enumerable.Repeat(RandomPtxProgram.Poison, program.Registers.Count).ToArray());
        try
        {
            var kernel = PtxModuleProgram.Compile(program.ToPtx()).Kernels["random_kernel"];
            var launch = new PtxLaunch(1, 1, 1, 1, 1, 1, 0, memory) { Parallelism = 1, Deadline = TimeSpan.FromSeconds(30) };
            kernel.Launch(launch, new Params().Add(input).Add(output).ToArray(), []);
            return (memory.Download<ulong>(output, program.Registers.Count), null);
        }
        catch (Exception e)
        {
            // A refusal, a fault or a crash of the engine's compiler: each is a result the reference does not have.
            return (null, e);
        }
    }

    /// <summary>Null when every output slot holds the reference's value (and the poison past the register's width); else what differs.</summary>
    private static string? Differences(RandomPtxProgram program, (ulong[]? Outputs, Exception? Error) run, ulong[] expected)
    {
        if (run.Error is not null)
        {
            return $"the engine failed: {run.Error.GetType().Name}: {run.Error.Message}";
        }

        var differences = new List<string>();
        foreach (var r in program.Registers)
        {
            var stored = r.Class == RegClass.Pred ? 32 : r.Bits;
            var mask = stored == 64 ? ulong.MaxValue : (1UL << stored) - 1;
            var slot = run.Outputs![r.Slot];
            if ((slot & ~mask) != (RandomPtxProgram.Poison & ~mask))
            {
                differences.Add($"{r}: the engine wrote past the register's {stored} bits (slot 0x{slot:X16})");
            }
            else if (!PtxReferenceEvaluator.Same(r.Class, slot & mask, expected[r.Slot]))
            {
                differences.Add($"{r}: engine {Show(r, slot & mask)}, reference {Show(r, expected[r.Slot])}");
            }
        }

        return differences.Count == 0 ? null : string.Join("; ", differences);
    }

    private static string Show(Reg r, ulong v) => r.Class switch
    {
        RegClass.Pred => v.ToString(CultureInfo.InvariantCulture),
        RegClass.F32 => string.Create(CultureInfo.InvariantCulture, $"0x{v:X8} ({BitConverter.UInt32BitsToSingle((uint)v):R})"),
        RegClass.F64 => string.Create(CultureInfo.InvariantCulture, $"0x{v:X16} ({BitConverter.UInt64BitsToDouble(v):R})"),
        _ => string.Create(CultureInfo.InvariantCulture, $"0x{v.ToString("X" + (r.Bits / 4), CultureInfo.InvariantCulture)} ({(long)(v << (64 - r.Bits)) >> (64 - r.Bits)})"),
    };
}
