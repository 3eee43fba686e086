using GpuPool.Ptx.Syntax;
using static GpuPool.Ptx.Tests.Syntax.PtxText;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Function bodies: declarations, blocks, labels, prototypes, target lists, guards and opcodes.</summary>
public sealed class PtxParserBodyTests
{
    [Fact]
    public void Register_declarations_give_a_range_per_parameterised_name_and_one_per_plain_name()
    {
        var statements = Body(".reg .b32 %r<100>;\n.reg .pred %p<5>;\n.reg .f32 a, b;\n.reg .v4 .f32 v;");

        Assert.Equal(
            [
                new PtxRegisterDeclaration("b32", 1, "%r", 100, 5),
                new PtxRegisterDeclaration("pred", 1, "%p", 5, 6),
                new PtxRegisterDeclaration("f32", 1, "a", 0, 7),
                new PtxRegisterDeclaration("f32", 1, "b", 0, 7),
                new PtxRegisterDeclaration("f32", 4, "v", 0, 8),
            ],
            statements);
    }

    [Fact]
    public void Body_variables_are_declarations_in_their_space()
    {
        var statements = Body(".local .align 8 .b8 __local_depot0[16];\n.shared .align 4 .f32 tile[16][16];\n.param .b64 param0;");

        var variables = statements.Select(s => Assert.IsType<PtxVariableDeclaration>(s).Variable).ToList();
        Assert.Equal(
            [("__local_depot0", PtxStateSpace.Local, 16L), ("tile", PtxStateSpace.Shared, 1024L), ("param0", PtxStateSpace.Param, 8L)],
            variables.Select(v => (v.Name, v.Space, v.Bytes)));
        Assert.Equal([5, 6, 7], statements.Select(s => s.Line));
    }

    [Fact]
    public void A_call_sequence_is_a_nested_block_with_its_own_statements()
    {
        var statements = Body("""
            { // callseq 0, 0
            .reg .b32 temp_param_reg;
            .param .b32 param0;
            st.param.b32 	[param0+0], %r2;
            .param .b32 retval0;
            call.uni (retval0),
            _Z9fibonaccij,
            (
            param0
            );
            ld.param.b32 	%r3, [retval0+0];
            } // callseq 0
            """);

        var block = Assert.IsType<PtxBlock>(Assert.Single(statements));
        Assert.Equal(5, block.Line);
        Assert.Equal(6, block.Body.Count);
        var call = Assert.IsType<PtxInstruction>(block.Body[4]);
        Assert.Equal(("call", 10), (call.Opcode, call.Line));
        Assert.Equal(["uni"], call.Modifiers);
        Assert.Equal(
            [new PtxList([new PtxSymbol("retval0")]), new PtxSymbol("_Z9fibonaccij"), new PtxList([new PtxSymbol("param0")])],
            call.Operands,
            OperandComparer.Instance);
    }

    [Fact]
    public void A_register_declared_without_a_percent_sign_is_a_register_operand_in_its_block_and_a_symbol_outside()
    {
        var statements = Body("{\n.reg .f16 low, high;\n.reg .b32 t<2>;\nmov.b32 {low, high}, %r7;\nmov.b32 t1, [t1];\nmov.b32 t2, 0;\n}\nmov.b16 %rs1, low;");

        var block = Assert.IsType<PtxBlock>(statements[0]);
        var (unpack, inRange, outOfRange) = ((PtxInstruction)block.Body[3], (PtxInstruction)block.Body[4], (PtxInstruction)block.Body[5]);
        Assert.Equal(new PtxVector([new PtxRegister("low"), new PtxRegister("high")]), unpack.Operands[0], OperandComparer.Instance);
        Assert.IsType<PtxRegister>(((PtxVector)unpack.Operands[0]).Elements[0]);
        Assert.IsType<PtxRegister>(inRange.Operands[0]);
        Assert.IsType<PtxRegister>(((PtxAddress)inRange.Operands[1]).Base);
        Assert.IsType<PtxSymbol>(outOfRange.Operands[0]);
        Assert.Equal(new PtxSymbol("low"), ((PtxInstruction)statements[1]).Operands[1]);
    }

    [Fact]
    public void Labels_are_statements_on_their_own_lines()
    {
        var statements = Body("$L__BB0_1:\n\tadd.s32 %r1, %r1, 1;\nBB0_2: ret;");

        Assert.Equal(new PtxLabel("$L__BB0_1", 5), statements[0]);
        Assert.Equal(6, statements[1].Line);
        Assert.Equal(new PtxLabel("BB0_2", 7), statements[2]);
        Assert.Equal(7, statements[3].Line);
    }

    [Fact]
    public void A_call_prototype_names_its_return_values_and_parameters()
    {
        var statements = Body("prototype_4 : .callprototype (.param .b32 _) _ (.param .b32 _, .param .align 8 .b8 _[16]);\nproto_void : .callprototype _ ();");

        Assert.Equal(
            [
                new PtxCallPrototype("prototype_4", [], [], 5),
                new PtxCallPrototype("proto_void", [], [], 6),
            ],
            statements.Select(s => Assert.IsType<PtxCallPrototype>(s) with { Returns = [], Parameters = [] }));
        var prototype = (PtxCallPrototype)statements[0];
        Assert.Equal([new PtxParameter("_", PtxStateSpace.Param, "b32", 0, 0)], prototype.Returns);
        Assert.Equal([new PtxParameter("_", PtxStateSpace.Param, "b32", 0, 0), new PtxParameter("_", PtxStateSpace.Param, "b8", 8, 16)], prototype.Parameters);
        Assert.Empty(((PtxCallPrototype)statements[1]).Parameters);
    }

    [Fact]
    public void Branch_and_call_targets_are_target_lists()
    {
        var statements = Body("ts: .branchtargets L0, L1, L2;\nfs: .calltargets f, g;\nL0: L1: L2: ret;");

        var branches = Assert.IsType<PtxTargetList>(statements[0]);
        Assert.Equal(("ts", false, 5), (branches.Name, branches.IsCallTargets, branches.Line));
        Assert.Equal(["L0", "L1", "L2"], branches.Targets);
        var calls = Assert.IsType<PtxTargetList>(statements[1]);
        Assert.True(calls.IsCallTargets);
        Assert.Equal(["f", "g"], calls.Targets);
    }

    [Fact]
    public void A_guard_names_its_predicate_and_whether_it_is_negated()
    {
        var statements = Body("@%p1 bra $L__BB0_2;\n@!%p2 bra.uni $L__BB0_3;");

        Assert.Equal(new PtxGuard("%p1", false), ((PtxInstruction)statements[0]).Guard);
        Assert.Equal(new PtxGuard("%p2", true), ((PtxInstruction)statements[1]).Guard);
        Assert.Equal("@!%p2 bra.uni $L__BB0_3", statements[1].ToString());
    }

    [Fact]
    public void A_vector_load_keeps_its_modifiers_in_order_and_its_destination_as_a_vector()
    {
        var load = Instruction("ld.global.nc.v4.f32 {%f1, %f2, %f3, %f4}, [%rd4+16];");

        Assert.Equal("ld", load.Opcode);
        Assert.Equal(["global", "nc", "v4", "f32"], load.Modifiers);
        Assert.Equal(
            [new PtxVector([new PtxRegister("%f1"), new PtxRegister("%f2"), new PtxRegister("%f3"), new PtxRegister("%f4")]), new PtxAddress(new PtxRegister("%rd4"), 16)],
            load.Operands,
            OperandComparer.Instance);
    }

    [Theory]
    [InlineData("setp.lt.and.s32 %p1, %r1, %r2, %p2;", "setp", "lt and s32")]
    [InlineData("cvt.rn.f32.s32 %f1, %r1;", "cvt", "rn f32 s32")]
    [InlineData("atom.global.add.f32 %f1, [%rd1], %f2;", "atom", "global add f32")]
    [InlineData("shfl.sync.bfly.b32 %r1|%p1, %r2, 1, 31, -1;", "shfl", "sync bfly b32")]
    [InlineData("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f1,%f2,%f3,%f4}, {%r1,%r2,%r3,%r4}, {%r5,%r6}, {%f5,%f6,%f7,%f8};", "mma", "sync aligned m16n8k16 row col f32 f16 f16 f32")]
    [InlineData("wmma.load.a.sync.aligned.row.m16n16k16.global.f16 {%r1,%r2,%r3,%r4,%r5,%r6,%r7,%r8}, [%rd1], %r9;", "wmma", "load a sync aligned row m16n16k16 global f16")]
    [InlineData("cp.async.ca.shared.global [%r1], [%rd1], 16;", "cp", "async ca shared global")]
    [InlineData("red.global.add.u64 [%rd1], %rd2;", "red", "global add u64")]
    [InlineData("vote.sync.ballot.b32 %r1, %p1, -1;", "vote", "sync ballot b32")]
    [InlineData("mad.wide.u32 %rd1, %r1, 4, %rd2;", "mad", "wide u32")]
    [InlineData("mul.hi.s32 %r1, %r2, %r3;", "mul", "hi s32")]
    [InlineData("bar.sync 0;", "bar", "sync")]
    [InlineData("barrier.sync.aligned 0;", "barrier", "sync aligned")]
    [InlineData("bar.warp.sync -1;", "bar", "warp sync")]
    [InlineData("fence.acq_rel.gpu;", "fence", "acq_rel gpu")]
    [InlineData("membar.gl;", "membar", "gl")]
    [InlineData("tex.2d.v4.f32.f32 {%f1,%f2,%f3,%f4}, [tex0, {%f5,%f6}];", "tex", "2d v4 f32 f32")]
    [InlineData("ld.shared::cluster.u32 %r1, [%rd1];", "ld", "shared::cluster u32")]
    [InlineData("cp.async.cg.shared.global.L2::128B [%r1], [%rd1], 16, 16;", "cp", "async cg shared global L2::128B")]
    [InlineData("barrier.cluster.arrive;", "barrier", "cluster arrive")]
    [InlineData("ret;", "ret", "")]
    public void An_opcode_splits_on_its_dots_into_the_opcode_and_its_modifiers_in_order(string text, string opcode, string modifiers)
    {
        var instruction = Instruction(text);

        Assert.Equal(opcode, instruction.Opcode);
        Assert.Equal(modifiers.Split(' ', StringSplitOptions.RemoveEmptyEntries), instruction.Modifiers);
    }

    [Fact]
    public void Opcodes_modifiers_and_registers_are_interned()
    {
        var statements = Body("add.s32 %r1, %r1, 1;\nadd.s32 %r1, %r2, 1;");

        var (first, second) = ((PtxInstruction)statements[0], (PtxInstruction)statements[1]);
        Assert.Same(first.Opcode, second.Opcode);
        Assert.Same(first.Modifiers[0], second.Modifiers[0]);
        Assert.Same(first.Operands[0], second.Operands[0]);
    }

    [Fact]
    public void Statements_carry_the_line_they_start_on()
    {
        var statements = Body("\n\n  mov.u32 %r1,\n  %tid.x;\n@%p1\n  ret;");

        Assert.Equal([7, 9], statements.Select(s => s.Line));
    }
}
