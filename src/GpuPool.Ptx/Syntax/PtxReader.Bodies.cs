namespace GpuPool.Ptx.Syntax;

/// <summary>Function bodies: statements, blocks, declarations, labels, prototypes and instructions.</summary>
internal sealed partial class PtxReader
{
    /// <summary>The statements up to and including the '}' that closes the block whose '{' was just read.</summary>
    private List<PtxStatement> ReadStatements(int depth, ref DirectiveSet directives)
    {
        var lexer = _lexer;
        var (openLine, openColumn) = (lexer.Line, lexer.Column);
        List<PtxStatement> statements = [];
        while (true)
        {
            var line = lexer.Line;
            switch (lexer.Kind)
            {
                case PtxTokenKind.End:
                    throw lexer.Error($"expected '}}' to close the body of '{_function}' (a block is open since line {openLine}, column {openColumn}), found the end of the text");
                case PtxTokenKind.Identifier:
                    ReadLabelOrInstruction(statements);
                    break;
                case PtxTokenKind.Directive:
                    ReadBodyDirective(statements, ref directives);
                    break;
                case PtxTokenKind.Punctuation when lexer.Char == '}':
                    lexer.Advance();
                    return statements;
                case PtxTokenKind.Punctuation when lexer.Char == '{':
                    if (depth >= MaxBlockDepth)
                    {
                        throw lexer.Error($"blocks are nested more than {MaxBlockDepth} deep");
                    }

                    lexer.Advance();
                    var scope = _namedRegisters.Count;
                    statements.Add(new PtxBlock(ReadStatements(depth + 1, ref directives), line));
                    _namedRegisters.RemoveRange(scope, _namedRegisters.Count - scope);
                    break;
                case PtxTokenKind.Punctuation when lexer.Char == '@':
                    statements.Add(ReadGuardedInstruction());
                    break;
                default:
                    throw lexer.Error($"expected an instruction, a declaration, a label or '}}' in the body of '{_function}', found {lexer.Describe()}");
            }
        }
    }

    private void ReadBodyDirective(List<PtxStatement> statements, ref DirectiveSet directives)
    {
        var lexer = _lexer;
        var line = lexer.Line;
        var name = lexer.DirectiveName;
        if (name is "reg")
        {
            ReadRegisters(statements);
            return;
        }

        if (name is "loc" or "file")
        {
            lexer.SkipLine();
            return;
        }

        if (SpaceOf(name) is var space and not PtxStateSpace.None and not PtxStateSpace.Reg)
        {
            lexer.Advance();
            ReadVariables(space, PtxLinkage.None, line, v => statements.Add(new PtxVariableDeclaration(v, line)));
            return;
        }

        if (name is "extern" or "visible" or "weak")
        {
            var linkage = ReadLinkage();
            if (lexer.Kind == PtxTokenKind.Directive && SpaceOf(lexer.DirectiveName) is var s and not PtxStateSpace.None and not PtxStateSpace.Reg)
            {
                lexer.Advance();
                ReadVariables(s, linkage, line, v => statements.Add(new PtxVariableDeclaration(v, line)));
                return;
            }

            throw lexer.Error($"expected a state space after the linkage in the body of '{_function}', found {lexer.Describe()}");
        }

        if (ReadPerformanceDirective(ref directives))
        {
            if (lexer.Is(';'))
            {
                lexer.Advance();
            }

            return;
        }

        throw lexer.Error($"expected an instruction, a declaration, a label or '}}' in the body of '{_function}', found the directive {lexer.Describe()}");
    }

    /// <summary><c>.reg [.v2|.v4] .type %r&lt;N&gt;, name, ... ;</c>: one declaration per name.</summary>
    private void ReadRegisters(List<PtxStatement> statements)
    {
        var lexer = _lexer;
        var line = lexer.Line;
        lexer.Advance();
        var vector = 1;
        string? type = null;
        while (type is null && lexer.Kind == PtxTokenKind.Directive)
        {
            var name = lexer.DirectiveName;
            if (VectorWidth(name) is var width and > 0)
            {
                vector = width;
            }
            else if (IsVariableType(name))
            {
                type = _names.Intern(name);
            }
            else if (name is "align")
            {
                lexer.Advance();
                ReadInt32("an alignment after .align");
                continue;
            }
            else
            {
                break;
            }

            lexer.Advance();
        }

        if (type is null)
        {
            throw lexer.Error($"expected a register type (.b32, .pred, .f64, ...) after .reg, found {lexer.Describe()}");
        }

        while (true)
        {
            var name = _names.Intern(Expect(PtxTokenKind.Identifier, "a register name"));
            lexer.Advance();
            var count = 0;
            if (lexer.Is('<'))
            {
                lexer.Advance();
                count = ReadInt32("a register count after '<'");
                ExpectPunctuation('>', "'>' after the register count");
            }

            statements.Add(new PtxRegisterDeclaration(type, vector, name, count, line));
            if (name[0] != '%')
            {
                _namedRegisters.Add((name, count));
            }

            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            ExpectPunctuation(';', "';' or ',' after the register declaration");
            return;
        }
    }

    private void ReadLabelOrInstruction(List<PtxStatement> statements)
    {
        var lexer = _lexer;
        var line = lexer.Line;
        var start = lexer.Start;
        var end = lexer.End;
        lexer.Advance();
        if (lexer.Is(':'))
        {
            var name = _names.Intern(lexer.Text.AsSpan(start, end - start));
            lexer.Advance();
            if (lexer.Kind == PtxTokenKind.Directive)
            {
                switch (lexer.DirectiveName)
                {
                    case "callprototype":
                        statements.Add(ReadCallPrototype(name, line));
                        return;
                    case "branchtargets" or "calltargets":
                        statements.Add(ReadTargetList(name, line));
                        return;
                }
            }

            statements.Add(new PtxLabel(name, line));
            return;
        }

        statements.Add(ReadInstruction(null, start, end, line));
    }

    private PtxCallPrototype ReadCallPrototype(string name, int line)
    {
        var lexer = _lexer;
        lexer.Advance();
        IReadOnlyList<PtxParameter> returns = lexer.Is('(') ? ReadParameters($"the prototype '{name}'") : [];
        if (lexer.Kind != PtxTokenKind.Identifier || !lexer.Span.SequenceEqual("_"))
        {
            throw lexer.Error($"expected '_' in the place of the function's name in .callprototype, found {lexer.Describe()}");
        }

        lexer.Advance();
        IReadOnlyList<PtxParameter> parameters = lexer.Is('(') ? ReadParameters($"the prototype '{name}'") : [];
        if (lexer.IsDirective("noreturn"))
        {
            lexer.Advance();
        }

        ExpectPunctuation(';', "';' to end the .callprototype");
        return new PtxCallPrototype(name, returns, parameters, line);
    }

    private PtxTargetList ReadTargetList(string name, int line)
    {
        var lexer = _lexer;
        var calls = lexer.DirectiveName is "calltargets";
        lexer.Advance();
        List<string> targets = [];
        while (true)
        {
            targets.Add(_names.Intern(Expect(PtxTokenKind.Identifier, calls ? "a function name in .calltargets" : "a label in .branchtargets")));
            lexer.Advance();
            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            ExpectPunctuation(';', "',' or ';' in the target list");
            return new PtxTargetList(name, calls, targets, line);
        }
    }

    private PtxInstruction ReadGuardedInstruction()
    {
        var lexer = _lexer;
        var line = lexer.Line;
        lexer.Advance();
        var negated = lexer.Is('!');
        if (negated)
        {
            lexer.Advance();
        }

        var predicate = _names.Intern(Expect(PtxTokenKind.Identifier, "a predicate register after '@'"));
        lexer.Advance();
        Expect(PtxTokenKind.Identifier, "an instruction after the guard");
        var (start, end) = (lexer.Start, lexer.End);
        lexer.Advance();
        return ReadInstruction(new PtxGuard(predicate, negated), start, end, line);
    }

    /// <summary>With the opcode's first name read (text from <paramref name="start"/> to <paramref name="end"/>): its modifiers, its operands and ';'.</summary>
    private PtxInstruction ReadInstruction(PtxGuard? guard, int start, int end, int line)
    {
        var lexer = _lexer;
        while (lexer.Kind == PtxTokenKind.Directive && !lexer.SpaceBefore)
        {
            end = lexer.End;
            lexer.Advance();
        }

        var (opcode, modifiers) = _names.Mnemonic(lexer.Text.AsSpan(start, end - start));
        if (lexer.Is(';'))
        {
            lexer.Advance();
            return new PtxInstruction(guard, opcode, modifiers, [], line);
        }

        var first = _operands.Count;
        while (true)
        {
            _operands.Add(ReadOperand());
            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            if (lexer.Is(';'))
            {
                lexer.Advance();
                break;
            }

            throw lexer.Error($"expected ',' or ';' after operand {_operands.Count - first} of '{lexer.Text.AsSpan(start, end - start)}', found {lexer.Describe()}");
        }

        return new PtxInstruction(guard, opcode, modifiers, PopOperands(first), line);
    }
}
