using GpuPool.Modules.Elf;

namespace GpuPool.Modules.Tests;

/// <summary>Module-scope variables read from a cubin's symbol table: size, alignment, space and initializer.</summary>
public sealed class CubinVariableTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    public static TheoryData<int> Archs => [52, 70];

    [Theory]
    [MemberData(nameof(Archs))]
    public void A_zeroed_device_array_has_its_size_and_no_initializer(int arch)
    {
        var x = Variables(arch)["x"];

        Assert.Equal((40L, 4, VariableSpace.Global), (x.Size, x.Align, x.Space));
        Assert.Empty(x.Initializer);
    }

    [Theory]
    [MemberData(nameof(Archs))]
    public void An_initialized_device_variable_carries_its_value(int arch)
    {
        var y = Variables(arch)["y"];

        Assert.Equal((4L, 4, VariableSpace.Global), (y.Size, y.Align, y.Space));
        Assert.Equal(BitConverter.GetBytes(2.5f), y.Initializer);
    }

    [Theory]
    [MemberData(nameof(Archs))]
    public void A_double_in_the_same_section_keeps_its_own_alignment(int arch)
    {
        var z = Variables(arch)["z"];

        Assert.Equal((8L, 8, VariableSpace.Global), (z.Size, z.Align, z.Space));
        Assert.Equal(BitConverter.GetBytes(1.25), z.Initializer);
    }

    [Theory]
    [MemberData(nameof(Archs))]
    public void A_constant_array_carries_its_values(int arch)
    {
        var c = Variables(arch)["c"];

        Assert.Equal((16L, 4, VariableSpace.Const), (c.Size, c.Align, c.Space));
        Assert.Equal(new float[] { 1, 2, 3, 4 }.SelectMany(BitConverter.GetBytes), c.Initializer);
    }

    [Fact]
    public void A_constant_without_an_initializer_has_none_though_the_bank_stores_its_zeros()
    {
        var zeros = Variables(70)["zeros"];

        Assert.Equal((12L, VariableSpace.Const), (zeros.Size, zeros.Space));
        Assert.Empty(zeros.Initializer);
    }

    [Fact]
    public void Only_the_sources_variables_are_reported()
    {
        Assert.Equal(["c", "x", "y", "z", "zeros"], Variables(70).Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void The_variables_of_a_compressed_fat_binarys_cubin_are_the_same()
    {
        var image = ModuleImage.Read(nvcc.FatBinary("variables.cu", Stored.AllCompressed));

        var expected = Variables(70);
        Assert.Equal(expected.Keys.Order(), image.Variables.Keys.Order());
        Assert.All(image.Variables.Values, v => Assert.Equal(Describe(expected[v.Name]), Describe(v)));
    }

    private static (long, int, VariableSpace, string) Describe(ModuleVariable v) => (v.Size, v.Align, v.Space, Convert.ToHexString(v.Initializer));

    private IReadOnlyDictionary<string, ModuleVariable> Variables(int arch) => Cubin.Read(nvcc.Cubin("variables.cu", arch)).Variables;
}
