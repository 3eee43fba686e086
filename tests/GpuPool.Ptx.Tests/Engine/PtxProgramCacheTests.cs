using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

public sealed class PtxProgramCacheTests
{
    private static string Module(string name) => $".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry {name}(.param .u64 p)\n{{\nret;\n}}\n";

    [Fact]
    public void The_same_text_gets_the_same_program_and_so_kernels_compiled_once()
    {
        var text = Module("cached_" + Guid.NewGuid().ToString("N"));

        var first = PtxProgramCache.Get("lease-a", text);
        var second = PtxProgramCache.Get("lease-a", new string(text.AsSpan()));

        Assert.Same(first, second);
        Assert.Same(first.Kernels.Values.Single(), second.Kernels.Values.Single());
    }

    [Fact]
    public void Different_texts_get_different_programs()
    {
        var a = PtxProgramCache.Get("lease-a", Module("a_" + Guid.NewGuid().ToString("N")));
        var b = PtxProgramCache.Get("lease-a", Module("b_" + Guid.NewGuid().ToString("N")));

        Assert.NotSame(a, b);
    }

    [Fact]
    public void The_same_text_in_another_scope_gets_a_program_of_its_own()
    {
        var text = Module("scoped_" + Guid.NewGuid().ToString("N"));

        Assert.NotSame(PtxProgramCache.Get("lease-a", text), PtxProgramCache.Get("lease-b", text));
    }
}
