using GpuPool.Ptx.Syntax;
using static GpuPool.Ptx.Tests.Syntax.PtxText;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Malformed PTX: a <see cref="PtxSyntaxException"/> that names the line, the column, what was expected and what was found.</summary>
public sealed class PtxParserErrorTests
{
    private const string Kernel = ".version 7.8\n.target sm_70\n.address_size 64\n.entry k()\n{\n";

    [Theory]
    [InlineData("", 1, 1, "expected the module to begin with .version, found the end of the text")]
    [InlineData(".target sm_70", 1, 1, "expected the module to begin with .version, found '.target'")]
    [InlineData(".version 7.8\n.version 7.8", 2, 1, "a module has one .version")]
    [InlineData(".version x", 1, 10, "expected a version such as 7.8 after .version, found 'x'")]
    [InlineData(".version 7.8\n.address_size 48", 2, 15, "expected .address_size 32 or 64, found 48")]
    [InlineData(".version 7.8\nadd.s32 %r1;", 2, 1, "expected a directive at module scope")]
    [InlineData(".version 7.8\n/* open", 2, 1, "a /* comment is not closed")]
    [InlineData(".version 7.8\n.global .u32 a", 2, 15, "expected ';' or ',' after the variable's declaration, found the end of the text")]
    [InlineData(".version 7.8\n.global .q32 a;", 2, 9, "expected a type (.b32, .f32, .u64, ...) in the declaration, found '.q32'")]
    [InlineData(".version 7.8\n.global .u32 a[;", 2, 16, "expected an array length or ']', found ';'")]
    [InlineData(".version 7.8\n.global .u32 a = {1, 2;", 2, 23, "expected '}' to close the initializer, found ';'")]
    [InlineData(".version 7.8\n.entry k(.param .u32 a .param .u32 b) {}", 2, 24, "expected ',' or ')' in the parameter list of 'k', found '.param'")]
    [InlineData(".version 7.8\n.entry k() ret;", 2, 12, "expected '{' to begin the body of 'k', or ';' to declare it, found 'ret'")]
    [InlineData(".version 7.8\n.section .debug_info { .b8 1", 2, 22, "expected '}' to close this '{'")]
    [InlineData(".version 7.8\n.pragma \"nounroll;", 2, 9, "a string is not closed before the end of its line")]
    [InlineData(".version 7.8\n.visible #", 2, 10, "unexpected character '#'")]
    public void A_malformed_module_names_where_and_what(string text, int line, int column, string message)
    {
        var error = Error(text);

        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.StartsWith($"line {line}, column {column}: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("add.s32 %r1, %r2, 1", 7, 1, "expected ',' or ';' after operand 3 of 'add.s32', found '}'")]
    [InlineData("add.s32 %r1 %r2;", 6, 13, "expected ',' or ';' after operand 1 of 'add.s32', found '%r2'")]
    [InlineData("mov.u32 %r1, ;", 6, 14, "expected an operand")]
    [InlineData("ld.u32 %r1, [%rd1+];", 6, 19, "expected an offset, found ']'")]
    [InlineData("ld.u32 %r1, [%rd1*4];", 6, 18, "unexpected character '*'")]
    [InlineData("ld.u32 %r1, [%rd1 4];", 6, 19, "expected '+', '-', ']' or ',' in the address, found '4'")]
    [InlineData("mov.u32 %r1, 12abc;", 6, 14, "malformed number")]
    [InlineData("mov.u32 %r1, 0x;", 6, 14, "expected an integer, found '0x'")]
    [InlineData("mov.u32 %r1, 019;", 6, 14, "not a base-8 integer")]
    [InlineData("mov.u64 %rd1, 18446744073709551616;", 6, 15, "does not fit in 64 bits")]
    [InlineData("mov.f32 %f1, 0f3F80;", 6, 14, "expected 8 hex digits after 0f")]
    [InlineData("mov.b64 %rd1, {%r1, {%r2}};", 6, 21, "expected an operand")]
    [InlineData("@%p1;", 6, 5, "expected an instruction after the guard, found ';'")]
    [InlineData(".reg .b32 %r<;", 6, 14, "expected a register count after '<', found ';'")]
    [InlineData(".reg %r1;", 6, 6, "expected a register type (.b32, .pred, .f64, ...) after .reg, found '%r1'")]
    [InlineData(".frobnicate 3;", 6, 1, "found the directive '.frobnicate'")]
    [InlineData("p: .callprototype (.param .b32 _) f (.param .b32 _);", 6, 35, "expected '_' in the place of the function's name in .callprototype")]
    [InlineData("ret;\n{\n", 10, 1, "expected '}' to close the body of 'k'")]
    public void A_malformed_body_names_where_and_what(string body, int line, int column, string message)
    {
        var error = Error(Kernel + body + "\n}\n");

        Assert.Equal((line, column), (error.Line, error.Column));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Blocks_nested_past_the_limit_are_refused_rather_than_overflowing_the_stack()
        => Assert.Contains("nested more than", Error(Kernel + new string('{', 100_000)).Message, StringComparison.Ordinal);

    [Fact]
    public void Null_text_is_an_argument_error()
        => Assert.Throws<ArgumentNullException>(() => PtxParser.Parse(null!));
}
