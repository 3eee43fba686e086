using System.Text;
using GpuPool.Ptx.Syntax;
using static GpuPool.Ptx.Tests.Syntax.PtxText;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>PTX that nvcc 11.8 and clang 14 write from Cuda/syntax_kernels.cu during the run, read whole.</summary>
public sealed class RealPtxTests(Nvcc nvcc, ClangCuda clang) : IClassFixture<Nvcc>, IClassFixture<ClangCuda>
{
    private const string Source = "syntax_kernels.cu";

    private static readonly string[] Kernels =
    [
        "sgemm_tiled", "reduce_sum", "histogram", "recursive", "say_hello", "_Z5scaleIfEvPT_S0_i", "_Z5scaleIdEvPT_S0_i",
        "_Z5scaleIiEvPT_S0_i", "halves", "bounded", "indirect",
    ];

    [Theory]
    [InlineData("sm_52")]
    [InlineData("sm_70")]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Nvcc_ptx_for_each_architecture_reads_whole(string arch)
    {
        var program = Parse(nvcc.Build($"syntax-{arch}.ptx", Source, "-ptx", $"-arch={arch}"));

        Assert.Equal([arch], program.Target);
        Assert.Equal((7, 8), (program.VersionMajor, program.VersionMinor));
        AssertWellFormed(program);
        var bounded = program.Functions.Single(f => f.Name == "bounded");
        Assert.Equal([256, 1, 1], bounded.Directives.MaxNtid);
        Assert.Equal(2, bounded.Directives.MinNctaPerSm);
        var coefficients = program.Variables.Single(v => v.Name == "coefficients");
        Assert.Equal((PtxStateSpace.Const, 32L), (coefficients.Space, coefficients.Bytes));
        Assert.StartsWith("{0, 0, 128, 63,", coefficients.Initializer, StringComparison.Ordinal);
        Assert.Contains(program.Variables, v => v is { Name: "partial", Linkage: PtxLinkage.Extern, Space: PtxStateSpace.Shared, Dims: [0] });
        var indirect = program.Functions.Single(f => f.Name == "indirect");
        Assert.Contains(Instructions(indirect.Body), i => i is { Opcode: "call", Modifiers: [] } && i.Operands[^1] is PtxSymbol);
    }

    [Theory]
    [InlineData("-G")]
    [InlineData("-lineinfo")]
    public void Nvcc_ptx_with_debug_information_reads_whole(string option)
    {
        var program = Parse(nvcc.Build($"syntax-sm_70{option}.ptx", Source, "-ptx", "-arch=sm_70", option));

        AssertWellFormed(program);
    }

    [Theory]
    [InlineData("sm_80")]
    [InlineData("sm_90")]
    public void Nvcc_ptx_with_clusters_and_asynchronous_copies_reads_whole(string arch)
    {
        var program = Parse(nvcc.Build($"cluster-{arch}.ptx", "cluster_kernels.cu", "-ptx", $"-arch={arch}"));

        Assert.Equal(["clustered", "copy_async"], program.Functions.Select(f => f.Name));
        Assert.Contains(Instructions(program.Functions[1].Body), i => i is { Opcode: "cp", Modifiers: ["async", ..] });
        if (arch == "sm_90")
        {
            Assert.True(program.Functions[0].Directives.ExplicitCluster);
            Assert.Equal([2, 1, 1], program.Functions[0].Directives.ReqNctaPerCluster);
            var clustered = Instructions(program.Functions[0].Body).ToList();
            Assert.Contains(clustered, i => i is { Opcode: "barrier", Modifiers: ["cluster", "arrive"] });
            Assert.Contains(clustered, i => i.Operands.Contains(new PtxRegister("%cluster_ctarank")));
        }
    }

    [Theory]
    [InlineData("sm_52", "-O2")]
    [InlineData("sm_70", "-O2")]
    [InlineData("sm_80", "-O2")]
    [InlineData("sm_86", "-O2")]
    [InlineData("sm_70", "-O0")]
    [InlineData("sm_70", "-g")]
    public void Clang_ptx_reads_whole(string arch, string option)
    {
        var program = PtxParser.Parse(clang.Build(Source, arch, option));

        Assert.Equal(arch, program.Target[0]);
        AssertWellFormed(program);
    }

    private static PtxProgram Parse(byte[] ptx) => PtxParser.Parse(Encoding.UTF8.GetString(ptx));

    /// <summary>Every kernel is there with a body of instructions, and every label a branch names is in its function.</summary>
    private static void AssertWellFormed(PtxProgram program)
    {
        Assert.Equal(Kernels.Order(StringComparer.Ordinal), program.Functions.Where(f => f.IsEntry).Select(f => f.Name).Order(StringComparer.Ordinal));
        Assert.Contains(program.Functions, f => f is { Name: "vprintf", Body: null, Returns.Count: 1 });
        Assert.Contains(program.Functions, f => f is { Name: "_Z9fibonaccij", IsEntry: false, Returns.Count: 1, Parameters.Count: 1 });
        foreach (var function in program.Functions.Where(f => f.Body is not null))
        {
            Assert.NotEmpty(Instructions(function.Body));
            var (targets, labels) = Branches(function);
            Assert.Empty(targets.Except(labels));
        }
    }
}
