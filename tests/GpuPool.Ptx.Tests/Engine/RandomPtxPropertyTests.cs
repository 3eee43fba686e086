using System.Globalization;
using System.Text;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Random straight-line PTX — 32-bit integer and f32 arithmetic, comparisons, selects and conversions over eight
/// registers of each kind — run by the engine for 64 threads of seeded inputs (NaNs, signed zeros, infinities and
/// extreme integers among them) and by a reference evaluator written here from the PTX ISA, instruction by instruction.
/// Where the outputs differ, the program is cut after each instruction in turn to find the first whose result differs,
/// and the failure names the seed, that instruction, its inputs and both values.
/// </summary>
public sealed class RandomPtxPropertyTests
{
    private const int Threads = 64;
    private const int Registers = 8;

    private static readonly string[] IntOps = ["add", "sub", "mul.lo", "mad.lo", "and", "or", "xor", "shl", "shr", "min", "max", "not", "neg", "abs", "popc", "clz", "brev"];
    private static readonly string[] FloatOps = ["add", "sub", "mul", "fma", "div", "min", "max", "neg", "abs", "sqrt"];
    private static readonly string[] Compares = ["lt", "le", "gt", "ge", "eq", "ne", "ltu", "leu", "gtu", "geu", "equ", "neu", "num", "nan"];

    /// <summary>One instruction: its text, and what it does to a thread's registers.</summary>
    private sealed record Step(string Text, Action<Machine> Apply);

    /// <summary>A thread's registers: r (32-bit integers), f (f32) and p (predicates).</summary>
    private sealed class Machine
    {
        public uint[] R = new uint[Registers];
        public float[] F = new float[Registers];
        public bool[] P = new bool[4];
    }

    [Fact]
    public void Random_programs_compute_what_the_reference_evaluator_computes_instruction_by_instruction()
    {
        for (var seed = 1; seed <= 400; seed++)
        {
            var steps = Generate(new Random(seed), 40);
            if (FirstDifference(seed, steps, Reference) is { } failure)
            {
                Assert.Fail(failure);
            }
        }
    }

    [Fact]
    public void A_wrong_reference_is_caught_and_the_first_instruction_that_differs_is_named()
    {
        // The reference is told that shl takes its count modulo 32, as x86 does; PTX clamps it, so shl by 33 gives 0.
        var steps = new List<Step>
        {
            Int("add.s32", 1, 2, 3, (a, b) => a + b),
            new("shl.b32 %r4, %r1, 33", m => m.R[4] = m.R[1] << 33),
            Int("xor.b32", 5, 4, 6, (a, b) => a ^ b),
        };

        var failure = FirstDifference(0, steps, Reference);

        Assert.NotNull(failure);
        Assert.Contains("instruction 2 (`shl.b32 %r4, %r1, 33`)", failure, StringComparison.Ordinal);
    }

    private static Step Int(string opcode, int d, int a, int b, Func<uint, uint, uint> f)
        => new($"{opcode} %r{d}, %r{a}, %r{b}", m => m.R[d] = f(m.R[a], m.R[b]));

    /// <summary>What the reference says each thread's registers hold after <paramref name="steps"/>.</summary>
    private static Machine Reference(Machine start, IReadOnlyList<Step> steps)
    {
        foreach (var step in steps)
        {
            step.Apply(start);
        }

        return start;
    }

    /// <summary>Null when the engine and the reference agree on every thread; else the first instruction that differs.</summary>
    private static string? FirstDifference(int seed, IReadOnlyList<Step> steps, Func<Machine, IReadOnlyList<Step>, Machine> reference)
    {
        var inputs = Inputs(seed);
        if (Mismatch(steps, steps.Count, inputs, reference) is null)
        {
            return null;
        }

        for (var k = 1; k <= steps.Count; k++)
        {
            if (Mismatch(steps, k, inputs, reference) is { } where)
            {
                var program = string.Join("\n", steps.Take(k).Select((s, n) => $"  {n + 1}: {s.Text}"));
                return $"seed {seed}: instruction {k} (`{steps[k - 1].Text}`) gives what the reference does not, {where}; the program up to it:\n{program}";
            }
        }

        return $"seed {seed}: the whole program differs but no prefix of it does (an engine bug in the stores?)";
    }

    /// <summary>Runs the first <paramref name="count"/> steps on the engine and the reference; the first register that differs, if any.</summary>
    private static string? Mismatch(IReadOnlyList<Step> steps, int count, Machine[] inputs, Func<Machine, IReadOnlyList<Step>, Machine> reference)
    {
        var prefix = steps.Take(count).ToArray();
        using var memory = new HostMemory();
        var packed = inputs.SelectMany(m => m.R.Select(r => r).Concat(m.F.Select(BitConverter.SingleToUInt32Bits))).ToArray();
        var pin = memory.Upload(packed);
        const int outputs = (2 * Registers) + 4;
        var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, Threads * outputs).ToArray());
        var kernel = PtxModuleProgram.Compile(Kernel(prefix)).Kernels["random"];
        kernel.Launch(new PtxLaunch(1, 1, 1, Threads, 1, 1, 0, memory) { Parallelism = 1, Deadline = TimeSpan.FromSeconds(30) }, new Params().Add(pin).Add(pout).ToArray(), []);
        var actual = memory.Download<uint>(pout, Threads * outputs);

        for (var t = 0; t < Threads; t++)
        {
            var start = Copy(inputs[t]);
            var expected = reference(start, prefix);
            for (var k = 0; k < outputs; k++)
            {
                var got = actual[(t * outputs) + k];
                var (want, name) = k < Registers
                    ? (expected.R[k], $"%r{k}")
                    : k < 2 * Registers
                    ? (BitConverter.SingleToUInt32Bits(expected.F[k - Registers]), $"%f{k - Registers}")
                    : (expected.P[k - (2 * Registers)] ? 1u : 0u, $"%p{k - (2 * Registers)}");
                var bothNaN = k >= Registers && k < 2 * Registers && float.IsNaN(BitConverter.UInt32BitsToSingle(got)) && float.IsNaN(BitConverter.UInt32BitsToSingle(want));
                if (got != want && !bothNaN)
                {
                    return $"in thread {t}: {name} is 0x{got:x8} on the engine and 0x{want:x8} by the reference (the thread's inputs: r = [{string.Join(", ", inputs[t].R.Select(r => $"0x{r:x}"))}], f = [{string.Join(", ", inputs[t].F.Select(f => f.ToString("R", CultureInfo.InvariantCulture)))}])";
                }
            }
        }

        return null;
    }

    private static Machine Copy(Machine m) => new() { R = [.. m.R], F = [.. m.F], P = [.. m.P] };

    private static Machine[] Inputs(int seed)
    {
        var random = new Random(seed * 7919);
        float[] floats = [float.NaN, 0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -1.5f, 1f, float.MaxValue, 3e-39f, 0.1f, 2.5f];
        uint[] ints = [0, 1, uint.MaxValue, 0x80000000, 0x7FFFFFFF, 31, 32, 33, 0xFFFF0000];
        return [.. Enumerable.Range(0, Threads).Select(_ => new Machine
        {
            R = [.. Enumerable.Range(0, Registers).Select(_ => random.Next(3) == 0 ? ints[random.Next(ints.Length)] : (uint)random.NextInt64(0, 1L << 32))],
            F = [.. Enumerable.Range(0, Registers).Select(_ => random.Next(3) == 0 ? floats[random.Next(floats.Length)] : (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-8, 9))))],
        })];
    }

    private static string Kernel(IReadOnlyList<Step> steps)
    {
        var text = new StringBuilder(".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry random(.param .u64 in, .param .u64 out)\n{\n");
        text.Append(".reg .pred %p<4>;\n.reg .b32 %r<8>;\n.reg .f32 %f<8>;\n.reg .b32 %t<4>;\n.reg .b64 %rd<6>;\n");
        text.Append("ld.param.u64 %rd1, [in];\nld.param.u64 %rd2, [out];\nmov.u32 %t0, %tid.x;\n");
        text.Append("mul.wide.u32 %rd3, %t0, 64;\nadd.s64 %rd4, %rd1, %rd3;\n");
        for (var k = 0; k < Registers; k++)
        {
            text.Append(CultureInfo.InvariantCulture, $"ld.global.u32 %r{k}, [%rd4+{4 * k}];\nld.global.f32 %f{k}, [%rd4+{32 + (4 * k)}];\n");
        }

        text.Append("setp.ne.u32 %p0, 0, 0;\nsetp.ne.u32 %p1, 0, 0;\nsetp.ne.u32 %p2, 0, 0;\nsetp.ne.u32 %p3, 0, 0;\n");
        foreach (var step in steps)
        {
            text.Append(step.Text).Append(";\n");
        }

        text.Append("mul.wide.u32 %rd3, %t0, 80;\nadd.s64 %rd5, %rd2, %rd3;\n");
        for (var k = 0; k < Registers; k++)
        {
            text.Append(CultureInfo.InvariantCulture, $"st.global.u32 [%rd5+{4 * k}], %r{k};\nst.global.f32 [%rd5+{32 + (4 * k)}], %f{k};\n");
        }

        for (var k = 0; k < 4; k++)
        {
            text.Append(CultureInfo.InvariantCulture, $"selp.u32 %t1, 1, 0, %p{k};\nst.global.u32 [%rd5+{64 + (4 * k)}], %t1;\n");
        }

        return text.Append("ret;\n}\n").ToString();
    }

    // ---- the generator and the reference semantics, from the PTX ISA ---------------------------------------------

    private static List<Step> Generate(Random random, int count)
    {
        var steps = new List<Step>();
        for (var k = 0; k < count; k++)
        {
            var step = random.Next(10) switch
            {
                < 4 => IntStep(random),
                < 7 => FloatStep(random),
                7 => Setp(random),
                8 => Selp(random),
                _ => Cvt(random),
            };

            // A guard now and then: the instruction happens or not, by a predicate, thread by thread.
            if (random.Next(6) == 0)
            {
                var (p, negated) = (random.Next(4), random.Next(2) == 0);
                var inner = step;
                step = new Step($"@{(negated ? "!" : "")}%p{p} {inner.Text}", m =>
                {
                    if (m.P[p] != negated)
                    {
                        inner.Apply(m);
                    }
                });
            }

            steps.Add(step);
        }

        return steps;
    }

    private static Step IntStep(Random random)
    {
        var op = IntOps[random.Next(IntOps.Length)];
        var signed = random.Next(2) == 0;
        var type = signed ? "s32" : "u32";
        var (d, a, b, c) = (random.Next(Registers), random.Next(Registers), random.Next(Registers), random.Next(Registers));
        switch (op)
        {
            case "shl" or "shr":
                var count = random.Next(3) == 0 ? random.Next(30, 40) : random.Next(0, 32);
                return op == "shl"
                    ? new($"shl.b32 %r{d}, %r{a}, {count}", m => m.R[d] = count >= 32 ? 0 : m.R[a] << count)
                    : signed
                    ? new($"shr.s32 %r{d}, %r{a}, {count}", m => m.R[d] = (uint)((int)m.R[a] >> Math.Min(count, 31)))
                    : new($"shr.u32 %r{d}, %r{a}, {count}", m => m.R[d] = count >= 32 ? 0 : m.R[a] >> count);
            case "not":
                return new($"not.b32 %r{d}, %r{a}", m => m.R[d] = ~m.R[a]);
            case "neg":
                return new($"neg.s32 %r{d}, %r{a}", m => m.R[d] = (uint)-(int)m.R[a]);
            case "abs":
                return new($"abs.s32 %r{d}, %r{a}", m => m.R[d] = (int)m.R[a] == int.MinValue ? m.R[a] : (uint)Math.Abs((int)m.R[a]));
            case "popc":
                return new($"popc.b32 %r{d}, %r{a}", m => m.R[d] = (uint)System.Numerics.BitOperations.PopCount(m.R[a]));
            case "clz":
                return new($"clz.b32 %r{d}, %r{a}", m => m.R[d] = (uint)System.Numerics.BitOperations.LeadingZeroCount(m.R[a]));
            case "brev":
                return new($"brev.b32 %r{d}, %r{a}", m =>
                {
                    uint x = m.R[a], r = 0;
                    for (var i = 0; i < 32; i++)
                    {
                        r |= ((x >> i) & 1) << (31 - i);
                    }

                    m.R[d] = r;
                });
            case "mad.lo":
                return new($"mad.lo.{type} %r{d}, %r{a}, %r{b}, %r{c}", m => m.R[d] = (m.R[a] * m.R[b]) + m.R[c]);
            case "and" or "or" or "xor":
                return new($"{op}.b32 %r{d}, %r{a}, %r{b}", m => m.R[d] = op == "and" ? m.R[a] & m.R[b] : op == "or" ? m.R[a] | m.R[b] : m.R[a] ^ m.R[b]);
            case "min" or "max":
                return new($"{op}.{type} %r{d}, %r{a}, %r{b}", m =>
                {
                    var less = signed ? (int)m.R[a] < (int)m.R[b] : m.R[a] < m.R[b];
                    m.R[d] = (op == "min") == less ? m.R[a] : m.R[b];
                });
            default:
                // add, sub, mul.lo: the low 32 bits, the same for both signs.
                return new($"{op}.{type} %r{d}, %r{a}, %r{b}", m => m.R[d] = op == "add" ? m.R[a] + m.R[b] : op == "sub" ? m.R[a] - m.R[b] : m.R[a] * m.R[b]);
        }
    }

    private static Step FloatStep(Random random)
    {
        var op = FloatOps[random.Next(FloatOps.Length)];
        var (d, a, b, c) = (random.Next(Registers), random.Next(Registers), random.Next(Registers), random.Next(Registers));
        return op switch
        {
            "add" => new($"add.rn.f32 %f{d}, %f{a}, %f{b}", m => m.F[d] = m.F[a] + m.F[b]),
            "sub" => new($"sub.rn.f32 %f{d}, %f{a}, %f{b}", m => m.F[d] = m.F[a] - m.F[b]),
            "mul" => new($"mul.rn.f32 %f{d}, %f{a}, %f{b}", m => m.F[d] = m.F[a] * m.F[b]),
            "fma" => new($"fma.rn.f32 %f{d}, %f{a}, %f{b}, %f{c}", m => m.F[d] = MathF.FusedMultiplyAdd(m.F[a], m.F[b], m.F[c])),
            "div" => new($"div.rn.f32 %f{d}, %f{a}, %f{b}", m => m.F[d] = m.F[a] / m.F[b]),
            "sqrt" => new($"sqrt.rn.f32 %f{d}, %f{a}", m => m.F[d] = MathF.Sqrt(m.F[a])),
            "neg" => new($"neg.f32 %f{d}, %f{a}", m => m.F[d] = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(m.F[a]) ^ 0x80000000)),
            "abs" => new($"abs.f32 %f{d}, %f{a}", m => m.F[d] = BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(m.F[a]) & 0x7FFFFFFF)),
            _ => new($"{op}.f32 %f{d}, %f{a}, %f{b}", m => m.F[d] = MinMax(m.F[a], m.F[b], op == "min")),
        };
    }

    /// <summary>min/max.f32: a NaN operand gives the other; -0 is below +0.</summary>
    private static float MinMax(float a, float b, bool min)
    {
        if (float.IsNaN(a) || float.IsNaN(b))
        {
            return float.IsNaN(a) ? b : a;
        }

        if (a == b)
        {
            // Equal but for the sign of a zero: min takes the negative one, max the positive.
            return float.IsNegative(a) == min ? a : b;
        }

        return (a < b) == min ? a : b;
    }

    private static Step Setp(Random random)
    {
        var (p, a, b) = (random.Next(4), random.Next(Registers), random.Next(Registers));
        if (random.Next(2) == 0)
        {
            var cmp = Compares[random.Next(Compares.Length)];
            return new($"setp.{cmp}.f32 %p{p}, %f{a}, %f{b}", m => m.P[p] = FloatCompare(cmp, m.F[a], m.F[b]));
        }

        var ordered = Compares[random.Next(6)];
        var signed = random.Next(2) == 0;
        return new($"setp.{ordered}.{(signed ? "s32" : "u32")} %p{p}, %r{a}, %r{b}", m =>
        {
            var order = signed ? ((int)m.R[a]).CompareTo((int)m.R[b]) : m.R[a].CompareTo(m.R[b]);
            m.P[p] = ordered switch { "lt" => order < 0, "le" => order <= 0, "gt" => order > 0, "ge" => order >= 0, "eq" => order == 0, _ => order != 0 };
        });
    }

    /// <summary>setp on f32: the plain comparisons are false where either is NaN; the ...u ones true; num and nan ask exactly that.</summary>
    private static bool FloatCompare(string cmp, float a, float b)
    {
        var unordered = float.IsNaN(a) || float.IsNaN(b);
        return cmp switch
        {
            "num" => !unordered,
            "nan" => unordered,
            _ when cmp.EndsWith('u') => unordered || FloatCompare(cmp[..^1], a, b),
            _ => !unordered && cmp switch { "lt" => a < b, "le" => a <= b, "gt" => a > b, "ge" => a >= b, "eq" => a == b, _ => a != b },
        };
    }

    private static Step Selp(Random random)
    {
        var (d, a, b, p) = (random.Next(Registers), random.Next(Registers), random.Next(Registers), random.Next(4));
        return random.Next(2) == 0
            ? new($"selp.b32 %r{d}, %r{a}, %r{b}, %p{p}", m => m.R[d] = m.P[p] ? m.R[a] : m.R[b])
            : new($"selp.f32 %f{d}, %f{a}, %f{b}, %p{p}", m => m.F[d] = m.P[p] ? m.F[a] : m.F[b]);
    }

    private static Step Cvt(Random random)
    {
        var (d, a) = (random.Next(Registers), random.Next(Registers));
        return random.Next(3) switch
        {
            0 => new($"cvt.rn.f32.s32 %f{d}, %r{a}", m => m.F[d] = (int)m.R[a]),
            1 => new($"cvt.rn.f32.u32 %f{d}, %r{a}", m => m.F[d] = m.R[a]),
            _ => new($"cvt.rzi.s32.f32 %r{d}, %f{a}", m =>
            {
                // Toward zero, saturating, NaN to 0.
                var f = m.F[a];
                m.R[d] = float.IsNaN(f) ? 0 : f >= 2147483648f ? int.MaxValue : f <= -2147483648f ? unchecked((uint)int.MinValue) : (uint)(int)MathF.Truncate(f);
            }),
        };
    }
}
