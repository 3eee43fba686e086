using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Syntax;

internal enum PtxTokenKind
{
    End,

    /// <summary>A name: <c>add</c>, <c>$L__BB0_2</c>, <c>_</c>, or a register with its components, <c>%tid.x</c>.</summary>
    Identifier,

    /// <summary>A dot and the name after it, digits allowed first: <c>.global</c>, <c>.2d</c>, <c>.v4</c>, <c>.shared::cta</c>.</summary>
    Directive,

    /// <summary>A literal that starts with a digit: 12, 0x1F, 0b101, 017, 1.5e3, 0f3F800000, 0d3FF0000000000000, with a U suffix maybe.</summary>
    Number,

    /// <summary>A double-quoted string, quotes included.</summary>
    String,

    /// <summary>One punctuation character, in <see cref="PtxLexer.Char"/>.</summary>
    Punctuation,
}

/// <summary>
/// Reads PTX text one token at a time, on demand: the parser looks at <see cref="Kind"/> and friends, then calls
/// <see cref="Advance"/>. Comments and white space are skipped; nothing is allocated but the strings the parser asks for.
/// </summary>
internal sealed class PtxLexer
{
    private readonly string _text;
    private int _pos;
    private int _line = 1;
    private int _lineStart;

    public PtxLexer(string text)
    {
        _text = text;
        Advance();
    }

    public string Text => _text;

    public PtxTokenKind Kind { get; private set; }

    /// <summary>Where the current token starts in <see cref="Text"/>, and where it ends (exclusive).</summary>
    public int Start { get; private set; }

    public int End { get; private set; }

    public int Line { get; private set; }

    public int Column { get; private set; }

    /// <summary>Whether white space or a comment came between the previous token and this one.</summary>
    public bool SpaceBefore { get; private set; }

    /// <summary>The character of a <see cref="PtxTokenKind.Punctuation"/> token ('\0' for any other).</summary>
    public char Char { get; private set; }

    public ReadOnlySpan<char> Span => _text.AsSpan(Start, End - Start);

    /// <summary>A directive's name without its dot.</summary>
    public ReadOnlySpan<char> DirectiveName => _text.AsSpan(Start + 1, End - Start - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Is(char c) => Kind == PtxTokenKind.Punctuation && Char == c;

    public bool IsDirective(string name) => Kind == PtxTokenKind.Directive && DirectiveName.SequenceEqual(name);

    /// <summary>A short description of the current token for messages: 'add', '{', "the end of the text".</summary>
    public string Describe()
    {
        if (Kind == PtxTokenKind.End)
        {
            return "the end of the text";
        }

        var span = Span;
        return span.Length > 40 ? $"'{span[..40]}...'" : $"'{span}'";
    }

    public PtxSyntaxException Error(string message) => new(Line, Column, message);

    public void Advance()
    {
        var text = _text;
        var pos = _pos;
        var space = false;
        while (true)
        {
            if (pos >= text.Length)
            {
                _pos = pos;
                Set(PtxTokenKind.End, pos, pos, space, '\0');
                return;
            }

            var c = text[pos];
            if (c == '\n')
            {
                pos++;
                _line++;
                _lineStart = pos;
                space = true;
            }
            else if (c is ' ' or '\t' or '\r' or '\f' or '\v')
            {
                pos++;
                space = true;
            }
            else if (c == '/' && pos + 1 < text.Length && text[pos + 1] == '/')
            {
                var end = text.IndexOf('\n', pos);
                pos = end < 0 ? text.Length : end;
                space = true;
            }
            else if (c == '/' && pos + 1 < text.Length && text[pos + 1] == '*')
            {
                pos = SkipBlockComment(pos);
                space = true;
            }
            else
            {
                break;
            }
        }

        var start = pos;
        var first = text[pos];
        if (IsNameStart(first) || ((first is '%' or '_' or '$') && pos + 1 < text.Length && IsNameChar(text[pos + 1])))
        {
            pos++;
            while (pos < text.Length && IsNameChar(text[pos]))
            {
                pos++;
            }

            // A special register's components belong to its name: %tid.x, %ctaid.y.
            if (first == '%')
            {
                while (pos + 1 < text.Length && text[pos] == '.' && IsNameChar(text[pos + 1]))
                {
                    pos += 2;
                    while (pos < text.Length && IsNameChar(text[pos]))
                    {
                        pos++;
                    }
                }
            }

            _pos = pos;
            Set(PtxTokenKind.Identifier, start, pos, space, '\0');
        }
        else if (first == '_')
        {
            _pos = pos + 1;
            Set(PtxTokenKind.Identifier, start, pos + 1, space, '\0');
        }
        else if (first == '.' && pos + 1 < text.Length && IsNameChar(text[pos + 1]))
        {
            pos += 2;
            while (pos < text.Length && IsNameChar(text[pos]))
            {
                pos++;
            }

            // Sub-qualified modifiers of PTX 7.x are one modifier each: .shared::cluster, .L2::128B, .L1::evict_last.
            while (pos + 2 < text.Length && text[pos] == ':' && text[pos + 1] == ':' && IsNameChar(text[pos + 2]))
            {
                pos += 3;
                while (pos < text.Length && IsNameChar(text[pos]))
                {
                    pos++;
                }
            }

            _pos = pos;
            Set(PtxTokenKind.Directive, start, pos, space, '\0');
        }
        else if (char.IsAsciiDigit(first))
        {
            _pos = ScanNumber(pos, space);
        }
        else if (first == '"')
        {
            pos++;
            while (pos < text.Length && text[pos] != '"' && text[pos] != '\n')
            {
                pos += text[pos] == '\\' && pos + 1 < text.Length && text[pos + 1] != '\n' ? 2 : 1;
            }

            if (pos >= text.Length || text[pos] != '"')
            {
                _pos = start;
                Set(PtxTokenKind.String, start, start + 1, space, '\0');
                throw Error("a string is not closed before the end of its line");
            }

            _pos = pos + 1;
            Set(PtxTokenKind.String, start, pos + 1, space, '\0');
        }
        else if (first is ',' or ';' or ':' or '(' or ')' or '[' or ']' or '{' or '}' or '+' or '-' or '!' or '|' or '@' or '=' or '<' or '>')
        {
            _pos = pos + 1;
            Set(PtxTokenKind.Punctuation, start, pos + 1, space, first);
        }
        else
        {
            _pos = pos;
            Set(PtxTokenKind.Punctuation, start, pos + 1, space, first);
            throw Error($"unexpected character {DescribeChar(first)}");
        }
    }

    /// <summary>Skips the rest of the current line (for .loc and .file, whose operands nothing needs), then reads the next token.</summary>
    public void SkipLine()
    {
        var end = _text.IndexOf('\n', _pos);
        _pos = end < 0 ? _text.Length : end;
        Advance();
    }

    /// <summary>
    /// With the current token a '{', skips to its matching '}' (strings and comments respected) and reads the token after
    /// it: the byte lists of a .section are many thousand tokens that nothing needs.
    /// </summary>
    public void SkipBraces()
    {
        var text = _text;
        var pos = _pos;
        var depth = 1;
        var (line, column) = (Line, Column);
        while (pos < text.Length)
        {
            var c = text[pos];
            switch (c)
            {
                case '\n':
                    pos++;
                    _line++;
                    _lineStart = pos;
                    continue;
                case '{':
                    depth++;
                    break;
                case '}':
                    if (--depth == 0)
                    {
                        _pos = pos + 1;
                        Advance();
                        return;
                    }

                    break;
                case '"':
                    pos++;
                    while (pos < text.Length && text[pos] != '"' && text[pos] != '\n')
                    {
                        pos++;
                    }

                    continue;
                case '/' when pos + 1 < text.Length && text[pos + 1] == '/':
                    var end = text.IndexOf('\n', pos);
                    pos = end < 0 ? text.Length : end;
                    continue;
                case '/' when pos + 1 < text.Length && text[pos + 1] == '*':
                    pos = SkipBlockComment(pos);
                    continue;
            }

            pos++;
        }

        throw new PtxSyntaxException(line, column, "expected '}' to close this '{', found the end of the text");
    }

    private int SkipBlockComment(int pos)
    {
        var (line, column) = (_line, pos - _lineStart + 1);
        var text = _text;
        for (var i = pos + 2; i + 1 < text.Length; i++)
        {
            if (text[i] == '\n')
            {
                _line++;
                _lineStart = i + 1;
            }
            else if (text[i] == '*' && text[i + 1] == '/')
            {
                return i + 2;
            }
        }

        throw new PtxSyntaxException(line, column, "a /* comment is not closed before the end of the text");
    }

    private int ScanNumber(int pos, bool space)
    {
        var text = _text;
        var start = pos;
        if (text[pos] == '0' && pos + 1 < text.Length && text[pos + 1] is 'x' or 'X' or 'b' or 'B' or 'f' or 'F' or 'd' or 'D')
        {
            pos += 2;
            while (pos < text.Length && char.IsAsciiHexDigit(text[pos]))
            {
                pos++;
            }
        }
        else
        {
            while (pos < text.Length && char.IsAsciiDigit(text[pos]))
            {
                pos++;
            }

            if (pos < text.Length && text[pos] == '.')
            {
                pos++;
                while (pos < text.Length && char.IsAsciiDigit(text[pos]))
                {
                    pos++;
                }
            }

            if (pos < text.Length && text[pos] is 'e' or 'E')
            {
                pos++;
                if (pos < text.Length && text[pos] is '+' or '-')
                {
                    pos++;
                }

                while (pos < text.Length && char.IsAsciiDigit(text[pos]))
                {
                    pos++;
                }
            }
        }

        if (pos < text.Length && text[pos] == 'U')
        {
            pos++;
        }

        Set(PtxTokenKind.Number, start, pos, space, '\0');
        if (pos < text.Length && (IsNameChar(text[pos]) || text[pos] == '.'))
        {
            End = pos + 1;
            throw Error($"malformed number {Describe()}");
        }

        return pos;
    }

    private void Set(PtxTokenKind kind, int start, int end, bool space, char c)
    {
        Kind = kind;
        Start = start;
        End = end;
        Line = _line;
        Column = start - _lineStart + 1;
        SpaceBefore = space;
        Char = c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsNameStart(char c) => char.IsAsciiLetter(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsNameChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '_' or '$';

    private static string DescribeChar(char c) => c is >= ' ' and < '\x7f' ? $"'{c}'" : $"U+{(int)c:X4}";
}
