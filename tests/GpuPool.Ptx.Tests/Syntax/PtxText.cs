using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>Small PTX modules for the parser's tests: a header, then a kernel around the statements under test.</summary>
internal static class PtxText
{
    public const string Header = ".version 7.8\n.target sm_70\n.address_size 64\n";

    public static PtxProgram Module(string text) => PtxParser.Parse(Header + text);

    /// <summary>The statements of a kernel whose body is <paramref name="body"/> (which starts on line 5).</summary>
    public static IReadOnlyList<PtxStatement> Body(string body)
        => Module(".visible .entry k() {\n" + body + "\n}\n").Functions.Single().Body!;

    public static PtxInstruction Instruction(string text) => Assert.IsType<PtxInstruction>(Assert.Single(Body(text)));

    public static PtxSyntaxException Error(string text) => Assert.Throws<PtxSyntaxException>(() => PtxParser.Parse(text));

    /// <summary>Every label a branch (bra, brx.idx) names in <paramref name="function"/>, and every label defined there.</summary>
    public static (HashSet<string> Targets, HashSet<string> Labels) Branches(PtxFunction function)
    {
        HashSet<string> targets = new(StringComparer.Ordinal);
        HashSet<string> labels = new(StringComparer.Ordinal);
        Walk(function.Body ?? []);
        return (targets, labels);

        void Walk(IReadOnlyList<PtxStatement> statements)
        {
            foreach (var statement in statements)
            {
                switch (statement)
                {
                    case PtxLabel label:
                        labels.Add(label.Name);
                        break;
                    case PtxTargetList list when !list.IsCallTargets:
                        labels.Add(list.Name);
                        targets.UnionWith(list.Targets);
                        break;
                    case PtxBlock block:
                        Walk(block.Body);
                        break;
                    case PtxInstruction { Opcode: "bra" } instruction:
                        targets.Add(Assert.IsType<PtxSymbol>(Assert.Single(instruction.Operands)).Name);
                        break;
                }
            }
        }
    }

    public static IEnumerable<PtxInstruction> Instructions(IReadOnlyList<PtxStatement>? statements)
    {
        foreach (var statement in statements ?? [])
        {
            if (statement is PtxInstruction instruction)
            {
                yield return instruction;
            }
            else if (statement is PtxBlock block)
            {
                foreach (var inner in Instructions(block.Body))
                {
                    yield return inner;
                }
            }
        }
    }
}
