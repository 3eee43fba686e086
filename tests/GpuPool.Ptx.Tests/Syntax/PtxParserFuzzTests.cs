using System.Diagnostics;
using System.Text;
using CsCheck;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Real PTX, damaged at random: the parser gives a tree or a <see cref="PtxSyntaxException"/>, never another exception or a hang.</summary>
public sealed class PtxParserFuzzTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    private enum Damage
    {
        Truncate,
        Replace,
        Delete,
        Insert,
    }

    private sealed record Mutation(Damage Damage, int Position, int Length, char Char);

    /// <summary>Characters the damage puts in: PTX's own punctuation and digits most often, any other now and then.</summary>
    private const string PtxChars = "{}[]();:,.+-!|@<>=_%$\"/*0123456789xfdU \n";

    private static readonly Gen<char> Chars = Gen.Frequency(
        (4, Gen.Int[0, PtxChars.Length - 1].Select(i => PtxChars[i])),
        (1, Gen.Char['\0', '\x7f']),
        (1, Gen.Char));

    private static readonly Gen<Mutation[]> Mutations = Gen.Select(Gen.Enum<Damage>(), Gen.Int[0, int.MaxValue], Gen.Int[1, 64], Chars)
        .Select((damage, position, length, c) => new Mutation(damage, position, length, c))
        .Array[1, 4];

    [Fact]
    public async Task Damaged_ptx_gives_a_tree_or_a_syntax_error_and_nothing_else_within_a_bounded_time()
    {
        var ptx = Encoding.UTF8.GetString(nvcc.Build("fuzz-sm_70.ptx", "syntax_kernels.cu", "-ptx", "-arch=sm_70", "-lineinfo"));
        var (trees, errors) = (0, 0);
        var run = Task.Run(() => Mutations.Sample(
            mutations =>
            {
                var text = Apply(ptx, mutations);
                var clock = Stopwatch.StartNew();
                try
                {
                    Assert.NotNull(PtxParser.Parse(text));
                    Interlocked.Increment(ref trees);
                }
                catch (PtxSyntaxException e)
                {
                    Assert.InRange(e.Line, 1, text.Count(c => c == '\n') + 1);
                    Assert.True(e.Column >= 1);
                    Interlocked.Increment(ref errors);
                }

                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"one parse took {clock.Elapsed}");
            },
            iter: 20_000,
            print: m => string.Join("; ", m.Select(x => x.ToString()))));

        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromMinutes(3))) == run;
        Assert.True(finished, "the fuzz run did not finish within 3 minutes: a parse hangs");
        await run;
        Assert.True(errors > 0 && trees > 0, $"{trees} trees, {errors} errors: the damage should give some of each");
    }

    private static string Apply(string text, Mutation[] mutations)
    {
        foreach (var (damage, position, length, c) in mutations)
        {
            var at = text.Length == 0 ? 0 : position % text.Length;
            text = damage switch
            {
                Damage.Truncate => text[..at],
                Damage.Replace when text.Length > 0 => string.Concat(text.AsSpan(0, at), [c], text.AsSpan(at + 1)),
                Damage.Delete => text.Remove(at, Math.Min(length, text.Length - at)),
                Damage.Insert => text.Insert(at, new string(c, 1 + (length % 3))),
                _ => text,
            };
        }

        return text;
    }
}
