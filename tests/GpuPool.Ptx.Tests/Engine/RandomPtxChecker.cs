using System.Globalization;
using System.Text;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Runs a generated program on the engine (one block, a thread per input row) and on the reference (each thread on its
/// own) and, where the outputs differ, finds the first instruction whose result differs (the engine rerun on each prefix
/// of the program) and the smallest program that still fails: that one instruction alone, each thread's registers loaded
/// with the values the reference held just before it.
/// </summary>
internal static class RandomPtxChecker
{
    /// <summary>The reference's registers (and which of them are unknown) and carry flag, by thread, before the first instruction and after each.</summary>
    private sealed record Trace(ulong[][][] States, bool[][][] Unknown, ulong[][] Carries)
    {
        /// <summary>Every thread's registers after the first <paramref name="k"/> instructions.</summary>
        public Expected At(int k) => new([.. States.Select(s => s[k])], [.. Unknown.Select(u => u[k])]);
    }

    /// <summary>What the reference says each thread's registers hold, by slot, and which of them it cannot know.</summary>
    private sealed record Expected(ulong[][] Values, bool[][] Unknown);

    /// <summary>Null when the engine and the reference agree on every register of every thread; else a report naming the seed, the instruction and both values.</summary>
    public static string? Check(RandomPtxProgram program, string seed, string? wrongOp = null)
    {
        var trace = Reference(program, wrongOp);
        var n = program.Instructions.Count;
        if (Differences(program, Run(program), trace.At(n)) is null)
        {
            return null;
        }

        // The first prefix whose registers differ ends with the instruction that went wrong (the prologue and epilogue alone for 0).
        var k = 0;
        while (k <= n && Differences(program.Take(k), Run(program.Take(k)), trace.At(k)) is null)
        {
            k++;
        }

        var report = new StringBuilder();
        report.Append(CultureInfo.InvariantCulture, $"random PTX program {seed} ({program.Threads} threads): the engine and the reference differ");
        if (k > n)
        {
            // Every prefix agreed but the whole did not: cannot be for straight-line code; report the whole program.
            return report.Append(" only for the whole program\n").Append(program.ToPtx()).ToString();
        }

        if (k == 0)
        {
            return report.Append(" with no instruction at all (loading and storing the registers)\n")
                .Append(Differences(program.Take(0), Run(program.Take(0)), trace.At(0))?.Text).Append('\n').Append(program.Take(0).ToPtx()).ToString();
        }

        var i = program.Instructions[k - 1];
        var difference = Differences(program.Take(k), Run(program.Take(k)), trace.At(k))!.Value;
        var thread = difference.Thread;
        report.Append(CultureInfo.InvariantCulture, $" first at instruction {k} of {n} (line {program.LineOf(k - 1)}): `{i}`\n");
        report.Append(CultureInfo.InvariantCulture, $"  thread {thread}'s inputs to it: ")
            .AppendJoin(", ", i.Reads().Distinct().Select(r => $"{r} = {Show(r, trace.States[thread][k - 1][r.Slot])}"));
        var readsCarry = i.Op is "addc" or "subc" or "madc";
        if (readsCarry)
        {
            report.Append(CultureInfo.InvariantCulture, $", CC.CF = {trace.Carries[thread][k - 1]} (set by the last .cc instruction before it)");
        }

        report.Append('\n').Append("  ").Append(difference.Text).Append('\n');

        // The smallest program: the one instruction, each thread's registers loaded with what the reference held before it.
        var alone = Alone(i, trace.At(k - 1).Values) with
        {
            InitialCarry = readsCarry ? ([.. trace.Carries.Select(c => c[k - 1])], i.Op == "subc") : null,
        };
        if (Differences(alone, Run(alone), Reference(alone, wrongOp).At(1)) is not null)
        {
            report.Append("minimal failing program (the instruction alone, each thread's inputs as the reference had them):\n").Append(alone.ToPtx());
        }
        else
        {
            // The instruction needs what came before it: drop every earlier instruction the failure does not need.
            var prefix = program.Take(k);
            for (var j = k - 2; j >= 0; j--)
            {
                var shorter = prefix with { Instructions = [.. prefix.Instructions.Where((_, m) => m != j)] };
                if (Differences(shorter, Run(shorter), Reference(shorter, wrongOp).At(shorter.Instructions.Count)) is not null)
                {
                    prefix = shorter;
                }
            }

            var read = prefix.Instructions.SelectMany(x => x.Reads()).Distinct().OrderBy(r => r.Slot);
            report.Append(CultureInfo.InvariantCulture, $"the instruction alone agrees; the smallest failing program found is the instructions it needs, with thread {thread}'s inputs ")
                .AppendJoin(", ", read.Select(r => $"{r} = {Show(r, prefix.Inputs[thread][r.Slot])}")).Append(":\n").Append(prefix.ToPtx());
        }

        return report.ToString();
    }

    /// <summary>
    /// A program of one instruction over only the registers it touches, a thread per row of <paramref name="values"/>
    /// (each a register file by old slot), loaded with that row.
    /// </summary>
    public static RandomPtxProgram Alone(Instr i, IReadOnlyList<ulong[]> values)
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
        return new RandomPtxProgram([.. map.Values], [moved], [.. values.Select(row => touched.Select(r => row[r.Slot]).ToArray())]);
    }

    private static Trace Reference(RandomPtxProgram program, string? wrongOp)
    {
        var n = program.Instructions.Count;
        var states = new ulong[program.Threads][][];
        var unknown = new bool[program.Threads][][];
        var carries = new ulong[program.Threads][];
        for (var t = 0; t < program.Threads; t++)
        {
            var evaluator = new PtxReferenceEvaluator(program, t, wrongOp);
            states[t] = new ulong[n + 1][];
            unknown[t] = new bool[n + 1][];
            carries[t] = new ulong[n + 1];
            for (var k = 0; k <= n; k++)
            {
                if (k > 0)
                {
                    evaluator.Execute(program.Instructions[k - 1]);
                }

                states[t][k] = [.. evaluator.Values];
                unknown[t][k] = [.. evaluator.Unknown];
                carries[t][k] = evaluator.Carry;
            }
        }

        return new Trace(states, unknown, carries);
    }

    /// <summary>The output buffer after the engine ran the program, or the engine's exception.</summary>
    private static (ulong[]? Outputs, Exception? Error) Run(RandomPtxProgram program)
    {
        using var memory = new HostMemory();
        var input = memory.Upload(Enumerable.Range(0, program.Threads).SelectMany(program.InputRow).ToArray());
        var output = memory.Upload(Enumerable.Repeat(RandomPtxProgram.Poison, program.Threads * program.Registers.Count).ToArray());
        try
        {
            var kernel = PtxModuleProgram.Compile(program.ToPtx()).Kernels["random_kernel"];
            var launch = new PtxLaunch(1, 1, 1, (uint)program.Threads, 1, 1, 0, memory) { Parallelism = 1, Deadline = TimeSpan.FromSeconds(30) };
            kernel.Launch(launch, new Params().Add(input).Add(output).ToArray(), []);
            return (memory.Download<ulong>(output, program.Threads * program.Registers.Count), null);
        }
        catch (Exception e)
        {
            // A refusal, a fault or a crash of the engine's compiler: each is a result the reference does not have.
            return (null, e);
        }
    }

    /// <summary>
    /// Null when every thread's output slots hold the reference's values where it knows them (and the poison past each
    /// register's width); else what differs in the first thread that differs.
    /// </summary>
    private static (int Thread, string Text)? Differences(RandomPtxProgram program, (ulong[]? Outputs, Exception? Error) run, Expected expected)
    {
        if (run.Error is not null)
        {
            return (0, $"the engine failed: {run.Error.GetType().Name}: {run.Error.Message}");
        }

        for (var t = 0; t < program.Threads; t++)
        {
            var differences = new List<string>();
            foreach (var r in program.Registers)
            {
                var stored = r.Class == RegClass.Pred ? 32 : r.Bits;
                var mask = stored == 64 ? ulong.MaxValue : (1UL << stored) - 1;
                var slot = run.Outputs![(t * program.Registers.Count) + r.Slot];
                if ((slot & ~mask) != (RandomPtxProgram.Poison & ~mask))
                {
                    differences.Add($"{r}: the engine wrote past the register's {stored} bits (slot 0x{slot:X16})");
                }
                else if (!expected.Unknown[t][r.Slot] && !PtxReferenceEvaluator.Same(r.Class, slot & mask, expected.Values[t][r.Slot]))
                {
                    differences.Add($"{r}: engine {Show(r, slot & mask)}, reference {Show(r, expected.Values[t][r.Slot])}");
                }
            }

            if (differences.Count > 0)
            {
                return (t, $"thread {t}: " + string.Join("; ", differences));
            }
        }

        return null;
    }

    private static string Show(Reg r, ulong v) => r.Class switch
    {
        RegClass.Pred => v.ToString(CultureInfo.InvariantCulture),
        RegClass.F32 => string.Create(CultureInfo.InvariantCulture, $"0x{v:X8} ({BitConverter.UInt32BitsToSingle((uint)v):R})"),
        RegClass.F64 => string.Create(CultureInfo.InvariantCulture, $"0x{v:X16} ({BitConverter.UInt64BitsToDouble(v):R})"),
        _ => string.Create(CultureInfo.InvariantCulture, $"0x{v.ToString("X" + (r.Bits / 4), CultureInfo.InvariantCulture)} ({(long)(v << (64 - r.Bits)) >> (64 - r.Bits)})"),
    };
}
