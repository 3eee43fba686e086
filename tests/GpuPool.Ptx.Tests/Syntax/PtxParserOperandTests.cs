using GpuPool.Ptx.Syntax;
using static GpuPool.Ptx.Tests.Syntax.PtxText;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Every operand form of an instruction.</summary>
public sealed class PtxParserOperandTests
{
    private static PtxOperand Source(string operand) => Instruction($"mov.b64 %rd1, {operand};").Operands[1];

    [Theory]
    [InlineData("%tid.x")]
    [InlineData("%ctaid.y")]
    [InlineData("%ntid.z")]
    [InlineData("%envreg3")]
    [InlineData("%clock64")]
    [InlineData("%globaltimer")]
    [InlineData("%lanemask_lt")]
    [InlineData("%laneid")]
    [InlineData("%r12")]
    [InlineData("%rd_a$b")]
    public void A_register_is_named_in_full_with_its_components(string name)
        => Assert.Equal(new PtxRegister(name), Source(name));

    [Theory]
    [InlineData("42", 42L, false)]
    [InlineData("-1", -1L, false)]
    [InlineData("0", 0L, false)]
    [InlineData("0x1F", 31L, false)]
    [InlineData("0X1f", 31L, false)]
    [InlineData("0xFFFFFFFF", 4294967295L, false)]
    [InlineData("0xFFFFFFFFFFFFFFFF", -1L, false)]
    [InlineData("-0x10", -16L, false)]
    [InlineData("017", 15L, false)]
    [InlineData("0b101", 5L, false)]
    [InlineData("0B11U", 3L, true)]
    [InlineData("7U", 7L, true)]
    [InlineData("18446744073709551615", -1L, false)]
    [InlineData("-9223372036854775808", long.MinValue, false)]
    public void An_integer_literal_reads_in_every_base_as_64_bits(string literal, long value, bool unsigned)
        => Assert.Equal(new PtxInteger(value, unsigned), Source(literal));

    [Theory]
    [InlineData("0f3F800000", 1.0, true)]
    [InlineData("0F3f800000", 1.0, true)]
    [InlineData("0fBF000000", -0.5, true)]
    [InlineData("0f7F800000", double.PositiveInfinity, true)]
    [InlineData("0d3FF0000000000000", 1.0, false)]
    [InlineData("0D4000000000000000", 2.0, false)]
    [InlineData("1.5", 1.5, false)]
    [InlineData("-2.25e2", -225.0, false)]
    [InlineData("1e3", 1000.0, false)]
    [InlineData("-0f3F800000", -1.0, true)]
    public void A_float_literal_reads_as_hex_bits_or_decimal(string literal, double value, bool single)
        => Assert.Equal(new PtxFloat(value, single), Source(literal));

    [Fact]
    public void A_nan_float_literal_keeps_its_bits()
        => Assert.True(double.IsNaN(((PtxFloat)Source("0f7FFFFFFF")).Value));

    [Theory]
    [InlineData("[%rd1]", "%rd1", 0L)]
    [InlineData("[%rd1+8]", "%rd1", 8L)]
    [InlineData("[%rd1+-8]", "%rd1", -8L)]
    [InlineData("[%rd1-8]", "%rd1", -8L)]
    [InlineData("[%rd1+0x10]", "%rd1", 16L)]
    [InlineData("[ %r6 + 4 ]", "%r6", 4L)]
    [InlineData("[param0+0]", "param0", 0L)]
    [InlineData("[table+12]", "table", 12L)]
    [InlineData("[table]", "table", 0L)]
    [InlineData("[256]", null, 256L)]
    public void An_address_has_a_register_or_symbol_base_and_an_offset(string text, string? baseName, long offset)
    {
        var address = Assert.IsType<PtxAddress>(Instruction($"ld.u32 %r1, {text};").Operands[1]);

        Assert.Equal(offset, address.Offset);
        switch (baseName)
        {
            case null:
                Assert.Null(address.Base);
                break;
            case ['%', ..]:
                Assert.Equal(new PtxRegister(baseName), address.Base);
                break;
            default:
                Assert.Equal(new PtxSymbol(baseName), address.Base);
                break;
        }
    }

    [Fact]
    public void A_vector_may_hold_the_sink()
        => Assert.Equal(
            new PtxVector([new PtxRegister("%f1"), PtxSink.Instance, new PtxRegister("%f3"), PtxSink.Instance]),
            Instruction("ld.v4.f32 {%f1, _, %f3, _}, [%rd1];").Operands[0],
            OperandComparer.Instance);

    [Fact]
    public void The_sink_alone_is_a_destination()
        => Assert.Same(PtxSink.Instance, Instruction("atom.exch.b32 _, [%rd1], 1;").Operands[0]);

    [Fact]
    public void A_negated_predicate_and_a_predicate_pair_are_operands_of_their_own()
    {
        var instruction = Instruction("setp.ne.and.s32 %p1|%p2, %r1, 0, !%p3;");

        Assert.Equal(new PtxPredicatePair(new PtxRegister("%p1"), new PtxRegister("%p2")), instruction.Operands[0]);
        Assert.Equal(new PtxNot(new PtxRegister("%p3")), instruction.Operands[3]);
    }

    [Fact]
    public void An_indirect_call_names_its_target_register_and_its_prototype()
    {
        var call = Instruction("call (retval0), \n%rd5, \n(\nparam0, param1\n)\n, prototype_1;");

        Assert.Equal(
            [
                new PtxList([new PtxSymbol("retval0")]),
                new PtxRegister("%rd5"),
                new PtxList([new PtxSymbol("param0"), new PtxSymbol("param1")]),
                new PtxSymbol("prototype_1"),
            ],
            call.Operands,
            OperandComparer.Instance);
        Assert.Empty(call.Modifiers);
    }

    [Fact]
    public void A_call_without_return_values_or_arguments_has_only_what_is_written()
        => Assert.Equal([new PtxSymbol("f"), new PtxList([])], Instruction("call.uni f, ();").Operands, OperandComparer.Instance);

    [Theory]
    [InlineData("$str", "$str", 0L)]
    [InlineData("table+8", "table", 8L)]
    [InlineData("table-4", "table", -4L)]
    [InlineData("__cudart_i2opi_f", "__cudart_i2opi_f", 0L)]
    public void A_symbol_operand_may_carry_an_offset(string text, string name, long offset)
        => Assert.Equal(new PtxSymbol(name, offset), Source(text));

    [Fact]
    public void A_texture_operand_is_a_bracket_of_its_elements()
    {
        var tex = Instruction("tex.2d.v4.f32.f32 {%f1, %f2, %f3, %f4}, [tex0, sampler0, {%f5, %f6}];");

        Assert.Equal(
            new PtxBracket([new PtxSymbol("tex0"), new PtxSymbol("sampler0"), new PtxVector([new PtxRegister("%f5"), new PtxRegister("%f6")])]),
            tex.Operands[1],
            OperandComparer.Instance);
    }

    [Fact]
    public void A_surface_store_has_its_bracket_first()
    {
        var store = Instruction("sust.b.1d.b32.trap [%rd1, {%r1}], {%r2};");

        Assert.Equal("[%rd1, {%r1}]", store.Operands[0].ToString());
        Assert.IsType<PtxBracket>(store.Operands[0]);
    }

    [Fact]
    public void A_vector_source_of_mov_packs_registers()
        => Assert.Equal("{%rs1, %rs2}", Instruction("mov.b32 %r1, {%rs1, %rs2};").Operands[1].ToString());
}
