using System.Globalization;

namespace GpuPool.Ptx.Syntax;

/// <summary>
/// One parse: a recursive-descent reader over <see cref="PtxLexer"/>'s tokens that builds the tree. This file reads
/// module scope (header, variables, function headers); the bodies and the operands are in the partial files beside it.
/// </summary>
internal sealed partial class PtxReader
{
    /// <summary>Nested <c>{ }</c> blocks deeper than this are refused rather than risking the stack.</summary>
    private const int MaxBlockDepth = 64;

    private readonly PtxLexer _lexer;
    private readonly PtxNames _names = new();

    /// <summary>Operands being read, as a stack: an instruction's, and above them a vector's or list's while it is read.</summary>
    private readonly List<PtxOperand> _operands = new(16);

    private string _function = "";

    /// <summary>
    /// Registers declared without '%' in the open blocks (<c>.reg .f16 low, high;</c> in inline asm, nvcc's
    /// <c>temp_param_reg</c>): an operand so named is that register, not a symbol. Innermost last; a block's are
    /// dropped when it closes.
    /// </summary>
    private readonly List<(string Name, int Count)> _namedRegisters = [];

    public PtxReader(string text) => _lexer = new PtxLexer(text);

    public PtxProgram ReadProgram()
    {
        var lexer = _lexer;
        if (!lexer.IsDirective("version"))
        {
            throw lexer.Error($"expected the module to begin with .version, found {lexer.Describe()}");
        }

        var (major, minor) = ReadVersion();
        List<string> target = [];
        var addressSize = 32;
        List<PtxVariable> variables = [];
        List<PtxFunction> functions = [];
        while (lexer.Kind != PtxTokenKind.End)
        {
            if (lexer.Kind != PtxTokenKind.Directive)
            {
                throw lexer.Error($"expected a directive at module scope (.target, .global, .entry, .func, ...), found {lexer.Describe()}");
            }

            switch (lexer.DirectiveName)
            {
                case "version":
                    throw lexer.Error("a module has one .version, and this is a second");
                case "target":
                    lexer.Advance();
                    while (true)
                    {
                        target.Add(_names.Intern(Expect(PtxTokenKind.Identifier, "a target name (sm_70, debug, ...) after .target")));
                        lexer.Advance();
                        if (!lexer.Is(','))
                        {
                            break;
                        }

                        lexer.Advance();
                    }

                    break;
                case "address_size":
                    lexer.Advance();
                    var (line, column) = (lexer.Line, lexer.Column);
                    addressSize = ReadInt32("32 or 64 after .address_size");
                    if (addressSize is not (32 or 64))
                    {
                        throw new PtxSyntaxException(line, column, $"expected .address_size 32 or 64, found {addressSize}");
                    }

                    break;
                case "file" or "loc":
                    lexer.SkipLine();
                    break;
                case "section":
                    SkipSection();
                    break;
                case "pragma":
                    SkipPragma();
                    break;
                case "alias":
                    SkipPast(';', "';' to end the .alias");
                    break;
                default:
                    ReadModuleDeclaration(variables, functions);
                    break;
            }
        }

        return new PtxProgram(major, minor, target, addressSize, variables, functions);
    }

    private (int Major, int Minor) ReadVersion()
    {
        var lexer = _lexer;
        lexer.Advance();
        var text = Expect(PtxTokenKind.Number, "a version such as 7.8 after .version");
        var dot = text.IndexOf('.');
        if (dot <= 0 || !int.TryParse(text[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            || !int.TryParse(text[(dot + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
        {
            throw lexer.Error($"expected a version such as 7.8 after .version, found {lexer.Describe()}");
        }

        lexer.Advance();
        return (major, minor);
    }

    private void ReadModuleDeclaration(List<PtxVariable> variables, List<PtxFunction> functions)
    {
        var lexer = _lexer;
        var (line, column) = (lexer.Line, lexer.Column);
        var linkage = ReadLinkage();
        if (lexer.Kind == PtxTokenKind.Directive)
        {
            if (lexer.DirectiveName is "entry" or "func")
            {
                functions.Add(ReadFunction(linkage, line));
                return;
            }

            if (SpaceOf(lexer.DirectiveName) is var space and not PtxStateSpace.None and not PtxStateSpace.Param and not PtxStateSpace.Reg)
            {
                lexer.Advance();
                ReadVariables(space, linkage, line, variables.Add);
                return;
            }
        }

        throw linkage == PtxLinkage.None
            ? new PtxSyntaxException(line, column, $"expected a module-scope directive (.target, .global, .const, .shared, .entry, .func, ...), found {lexer.Describe()}")
            : lexer.Error($"expected .entry, .func or a state space (.global, .const, .shared, .local) after the linkage, found {lexer.Describe()}");
    }

    private PtxLinkage ReadLinkage()
    {
        var lexer = _lexer;
        var linkage = PtxLinkage.None;
        while (lexer.Kind == PtxTokenKind.Directive)
        {
            var next = lexer.DirectiveName switch
            {
                "visible" => PtxLinkage.Visible,
                "extern" => PtxLinkage.Extern,
                "weak" => PtxLinkage.Weak,
                "common" => PtxLinkage.Common,
                _ => PtxLinkage.None,
            };
            if (next == PtxLinkage.None)
            {
                break;
            }

            linkage = next;
            lexer.Advance();
        }

        return linkage;
    }

    // ---- Variables -------------------------------------------------------------------------------------------

    /// <summary>After the state space: <c>[.align N] [.v2|.v4] .type name[dims] [= init] (, name...)* ;</c>.</summary>
    private void ReadVariables(PtxStateSpace space, PtxLinkage linkage, int line, Action<PtxVariable> add)
    {
        var lexer = _lexer;
        var align = 0;
        var vector = 1;
        string? type = null;
        while (type is null && lexer.Kind == PtxTokenKind.Directive)
        {
            var name = lexer.DirectiveName;
            if (name is "align")
            {
                lexer.Advance();
                align = ReadInt32("an alignment after .align");
                continue;
            }

            if (name is "attribute")
            {
                lexer.Advance();
                SkipParenthesised(".attribute");
                continue;
            }

            if (VectorWidth(name) is var width and > 0)
            {
                vector = width;
            }
            else if (IsVariableType(name))
            {
                type = _names.Intern(name);
            }
            else
            {
                break;
            }

            lexer.Advance();
        }

        if (type is null)
        {
            throw lexer.Error($"expected a type (.b32, .f32, .u64, ...) in the declaration, found {lexer.Describe()}");
        }

        while (true)
        {
            var name = _names.Intern(Expect(PtxTokenKind.Identifier, "the variable's name"));
            lexer.Advance();
            List<long>? dims = null;
            while (lexer.Is('['))
            {
                lexer.Advance();
                dims ??= [];
                if (lexer.Is(']'))
                {
                    dims.Add(0);
                }
                else
                {
                    dims.Add(ReadInt32("an array length or ']'"));
                }

                ExpectPunctuation(']', "']' to close the array length");
            }

            string? initializer = null;
            if (lexer.Is('='))
            {
                lexer.Advance();
                initializer = ReadInitializerText();
            }

            add(new PtxVariable(name, space, type, vector, align, dims, initializer, linkage, line));
            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            ExpectPunctuation(';', "';' or ',' after the variable's declaration");
            return;
        }
    }

    /// <summary>The initializer's text as written, up to the ',' or ';' outside its braces.</summary>
    private string ReadInitializerText()
    {
        var lexer = _lexer;
        var (line, column) = (lexer.Line, lexer.Column);
        var start = lexer.Start;
        var end = start;
        var depth = 0;
        while (depth > 0 || !(lexer.Is(',') || lexer.Is(';')))
        {
            if (lexer.Kind == PtxTokenKind.End)
            {
                throw depth > 0
                    ? new PtxSyntaxException(line, column, "expected '}' to close the initializer, found the end of the text")
                    : lexer.Error("expected ';' after the initializer, found the end of the text");
            }

            if (lexer.Is('{'))
            {
                depth++;
            }
            else if (lexer.Is('}'))
            {
                if (--depth < 0)
                {
                    throw lexer.Error("found '}' with no '{' open in the initializer");
                }
            }
            else if (lexer.Is(';'))
            {
                throw lexer.Error("expected '}' to close the initializer, found ';'");
            }

            end = lexer.End;
            lexer.Advance();
        }

        if (end == start)
        {
            throw lexer.Error($"expected an initializer after '=', found {lexer.Describe()}");
        }

        return lexer.Text[start..end];
    }

    // ---- Functions -------------------------------------------------------------------------------------------

    private PtxFunction ReadFunction(PtxLinkage linkage, int line)
    {
        var lexer = _lexer;
        var isEntry = lexer.DirectiveName is "entry";
        lexer.Advance();
        IReadOnlyList<PtxParameter> returns = lexer.Is('(') ? ReadParameters(isEntry ? "the kernel" : "the function") : [];
        if (isEntry && returns.Count > 0)
        {
            throw lexer.Error("a kernel (.entry) has no return values");
        }

        var name = _names.Intern(Expect(PtxTokenKind.Identifier, isEntry ? "the kernel's name after .entry" : "the function's name after .func"));
        _function = name;
        _namedRegisters.Clear();
        lexer.Advance();
        IReadOnlyList<PtxParameter> parameters = lexer.Is('(') ? ReadParameters($"'{name}'") : [];
        foreach (var register in returns.Concat(parameters).Where(p => p.Space == PtxStateSpace.Reg && p.Name[0] != '%'))
        {
            _namedRegisters.Add((register.Name, 0));
        }
        var directives = new DirectiveSet();
        while (lexer.Kind == PtxTokenKind.Directive && ReadPerformanceDirective(ref directives))
        {
        }

        IReadOnlyList<PtxStatement>? body = null;
        if (lexer.Is('{'))
        {
            lexer.Advance();
            body = ReadStatements(depth: 1, ref directives);
        }
        else if (lexer.Is(';'))
        {
            lexer.Advance();
        }
        else
        {
            throw lexer.Error($"expected '{{' to begin the body of '{name}', or ';' to declare it, found {lexer.Describe()}");
        }

        return new PtxFunction(name, isEntry, linkage, parameters, returns, directives.ToDirectives(), body, line);
    }

    private PtxParameter[] ReadParameters(string owner)
    {
        var lexer = _lexer;
        lexer.Advance();
        if (lexer.Is(')'))
        {
            lexer.Advance();
            return [];
        }

        List<PtxParameter> parameters = [];
        while (true)
        {
            parameters.Add(ReadParameter(owner));
            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            ExpectPunctuation(')', $"',' or ')' in the parameter list of {owner}");
            return [.. parameters];
        }
    }

    /// <summary><c>.param [.align N] .type [.ptr [.space] [.align N]] name [[N]]</c>, or <c>.reg .type name</c>.</summary>
    private PtxParameter ReadParameter(string owner)
    {
        var lexer = _lexer;
        var space = PtxStateSpace.None;
        string? type = null;
        var (align, pointer, pointerSpace, pointerAlign) = (0, false, PtxStateSpace.None, 0);
        while (lexer.Kind == PtxTokenKind.Directive)
        {
            var name = lexer.DirectiveName;
            if (name is "align")
            {
                lexer.Advance();
                var value = ReadInt32("an alignment after .align");
                if (pointer)
                {
                    pointerAlign = value;
                }
                else
                {
                    align = value;
                }

                continue;
            }

            if (name is "attribute")
            {
                lexer.Advance();
                SkipParenthesised(".attribute");
                continue;
            }

            if (name is "ptr")
            {
                pointer = true;
            }
            else if (SpaceOf(name) is var s and not PtxStateSpace.None)
            {
                if (pointer)
                {
                    pointerSpace = s;
                }
                else if (space == PtxStateSpace.None && s is PtxStateSpace.Param or PtxStateSpace.Reg)
                {
                    space = s;
                }
                else
                {
                    throw lexer.Error($"expected .param or .reg to begin a parameter of {owner}, found {lexer.Describe()}");
                }
            }
            else if (IsVariableType(name) && type is null)
            {
                type = _names.Intern(name);
            }
            else if (VectorWidth(name) == 0)
            {
                throw lexer.Error($"expected a parameter attribute (.align, .ptr, a type) in the parameter list of {owner}, found {lexer.Describe()}");
            }

            lexer.Advance();
        }

        if (space == PtxStateSpace.None)
        {
            throw lexer.Error($"expected .param or .reg to begin a parameter of {owner}, found {lexer.Describe()}");
        }

        if (type is null)
        {
            throw lexer.Error($"expected the parameter's type (.b32, .u64, ...) in the parameter list of {owner}, found {lexer.Describe()}");
        }

        var parameterName = _names.Intern(Expect(PtxTokenKind.Identifier, $"a parameter name in the parameter list of {owner}"));
        lexer.Advance();
        var length = 0;
        if (lexer.Is('['))
        {
            lexer.Advance();
            length = lexer.Is(']') ? 0 : ReadInt32("the parameter's array length");
            ExpectPunctuation(']', "']' to close the parameter's array length");
        }

        return new PtxParameter(parameterName, space, type, align, length, pointerSpace, pointerAlign);
    }

    /// <summary>
    /// A performance directive (.maxntid, .reqntid, .minnctapersm, .maxnctapersm, .maxnreg, .noreturn, and sm_90's
    /// .explicitcluster, .reqnctapercluster, .maxclusterrank) into <paramref name="directives"/>, or a .pragma skipped;
    /// false for any other directive.
    /// </summary>
    private bool ReadPerformanceDirective(ref DirectiveSet directives)
    {
        var lexer = _lexer;
        switch (lexer.DirectiveName)
        {
            case "maxntid":
                directives.MaxNtid = ReadDimensions(".maxntid");
                return true;
            case "reqntid":
                directives.ReqNtid = ReadDimensions(".reqntid");
                return true;
            case "reqnctapercluster":
                directives.ReqNctaPerCluster = ReadDimensions(".reqnctapercluster");
                return true;
            case "minnctapersm" or "maxnctapersm":
                lexer.Advance();
                directives.MinNctaPerSm = ReadInt32("a CTA count");
                return true;
            case "maxnreg":
                lexer.Advance();
                directives.MaxNReg = ReadInt32("a register count after .maxnreg");
                return true;
            case "maxclusterrank":
                lexer.Advance();
                directives.MaxClusterRank = ReadInt32("a cluster rank after .maxclusterrank");
                return true;
            case "noreturn":
                directives.NoReturn = true;
                lexer.Advance();
                return true;
            case "explicitcluster":
                directives.ExplicitCluster = true;
                lexer.Advance();
                return true;
            case "pragma":
                SkipPragma();
                return true;
            default:
                return false;
        }
    }

    private int[] ReadDimensions(string directive)
    {
        var lexer = _lexer;
        lexer.Advance();
        Span<int> values = stackalloc int[3];
        var count = 0;
        while (true)
        {
            values[count++] = ReadInt32($"a thread count after {directive}");
            if (!lexer.Is(',') || count == 3)
            {
                return values[..count].ToArray();
            }

            lexer.Advance();
        }
    }

    // ---- Helpers ---------------------------------------------------------------------------------------------

    /// <summary>The current token's text if it is of <paramref name="kind"/> (not consumed); else the error naming <paramref name="what"/>.</summary>
    private ReadOnlySpan<char> Expect(PtxTokenKind kind, string what)
        => _lexer.Kind == kind ? _lexer.Span : throw _lexer.Error($"expected {what}, found {_lexer.Describe()}");

    private void ExpectPunctuation(char c, string what)
    {
        if (!_lexer.Is(c))
        {
            throw _lexer.Error($"expected {what}, found {_lexer.Describe()}");
        }

        _lexer.Advance();
    }

    private void SkipSection()
    {
        var lexer = _lexer;
        lexer.Advance();
        if (lexer.Kind is not (PtxTokenKind.Directive or PtxTokenKind.Identifier))
        {
            throw lexer.Error($"expected a section name after .section, found {lexer.Describe()}");
        }

        lexer.Advance();
        if (!lexer.Is('{'))
        {
            throw lexer.Error($"expected '{{' to begin the section's contents, found {lexer.Describe()}");
        }

        lexer.SkipBraces();
    }

    /// <summary><c>.pragma "nounroll";</c>: strings, then ';'.</summary>
    private void SkipPragma()
    {
        var lexer = _lexer;
        lexer.Advance();
        while (true)
        {
            Expect(PtxTokenKind.String, "a string after .pragma");
            lexer.Advance();
            if (!lexer.Is(','))
            {
                break;
            }

            lexer.Advance();
        }

        ExpectPunctuation(';', "';' to end the .pragma");
    }

    private void SkipPast(char c, string what)
    {
        var lexer = _lexer;
        while (!lexer.Is(c))
        {
            if (lexer.Kind == PtxTokenKind.End)
            {
                throw lexer.Error($"expected {what}, found the end of the text");
            }

            lexer.Advance();
        }

        lexer.Advance();
    }

    /// <summary>With the current token '(': past its matching ')'.</summary>
    private void SkipParenthesised(string what)
    {
        var lexer = _lexer;
        if (!lexer.Is('('))
        {
            throw lexer.Error($"expected '(' after {what}, found {lexer.Describe()}");
        }

        var depth = 0;
        do
        {
            if (lexer.Kind == PtxTokenKind.End)
            {
                throw lexer.Error($"expected ')' to close {what}, found the end of the text");
            }

            depth += lexer.Is('(') ? 1 : lexer.Is(')') ? -1 : 0;
            lexer.Advance();
        }
        while (depth > 0);
    }

    private static PtxStateSpace SpaceOf(ReadOnlySpan<char> name) => name switch
    {
        "reg" => PtxStateSpace.Reg,
        "sreg" => PtxStateSpace.Sreg,
        "const" => PtxStateSpace.Const,
        "global" => PtxStateSpace.Global,
        "local" => PtxStateSpace.Local,
        "param" => PtxStateSpace.Param,
        "shared" => PtxStateSpace.Shared,
        "tex" => PtxStateSpace.Tex,
        _ => PtxStateSpace.None,
    };

    private static int VectorWidth(ReadOnlySpan<char> name) => name switch
    {
        "v2" => 2,
        "v4" => 4,
        "v8" => 8,
        _ => 0,
    };

    /// <summary>A fundamental type, or one of the opaque ones of textures and surfaces (.texref, .samplerref, .surfref).</summary>
    private static bool IsVariableType(ReadOnlySpan<char> name) => name switch
    {
        "pred" or "b8" or "s8" or "u8" or "b16" or "s16" or "u16" or "f16" or "bf16" or "b32" or "s32" or "u32" or "f32"
            or "f16x2" or "bf16x2" or "tf32" or "b64" or "s64" or "u64" or "f64" or "b128" => true,
        "texref" or "samplerref" or "surfref" => true,
        _ => false,
    };

    /// <summary>A function's performance directives as they are read, on the function and in its body.</summary>
    private struct DirectiveSet
    {
        public int[]? MaxNtid;
        public int[]? ReqNtid;
        public int MinNctaPerSm;
        public int MaxNReg;
        public bool NoReturn;
        public bool ExplicitCluster;
        public int[]? ReqNctaPerCluster;
        public int MaxClusterRank;

        public readonly PtxFunctionDirectives ToDirectives()
            => MaxNtid is null && ReqNtid is null && MinNctaPerSm == 0 && MaxNReg == 0 && !NoReturn && !ExplicitCluster
                && ReqNctaPerCluster is null && MaxClusterRank == 0
                ? PtxFunctionDirectives.None
                : new PtxFunctionDirectives(MaxNtid, ReqNtid, MinNctaPerSm, MaxNReg, NoReturn)
                {
                    ExplicitCluster = ExplicitCluster,
                    ReqNctaPerCluster = ReqNctaPerCluster,
                    MaxClusterRank = MaxClusterRank,
                };
    }
}
