using System.Globalization;

namespace GpuPool.Ptx.Syntax;

/// <summary>An instruction's operands and the literals in them.</summary>
internal sealed partial class PtxReader
{
    /// <summary>An operand: a primary one, <c>!%p</c>, or <c>%p|%q</c>.</summary>
    private PtxOperand ReadOperand()
    {
        var lexer = _lexer;
        if (lexer.Is('!'))
        {
            lexer.Advance();
            return new PtxNot(ReadPrimary(Aggregates.None));
        }

        var operand = ReadPrimary(Aggregates.All);
        if (lexer.Is('|'))
        {
            lexer.Advance();
            return new PtxPredicatePair(operand, ReadPrimary(Aggregates.None));
        }

        return operand;
    }

    /// <summary>
    /// A register, a literal, a symbol (with an offset), the sink; and the kinds of <paramref name="aggregates"/> (an
    /// address, a vector, a list). Aggregates nest one level at most, so no input can run the reader out of stack.
    /// </summary>
    private PtxOperand ReadPrimary(Aggregates aggregates)
    {
        var lexer = _lexer;
        switch (lexer.Kind)
        {
            case PtxTokenKind.Identifier:
                {
                    var span = lexer.Span;
                    if (span[0] == '%')
                    {
                        var register = _names.Register(span);
                        lexer.Advance();
                        return register;
                    }

                    if (span is "_")
                    {
                        lexer.Advance();
                        return PtxSink.Instance;
                    }

                    if (IsNamedRegister(span))
                    {
                        var named = _names.Register(span);
                        lexer.Advance();
                        return named;
                    }

                    var symbol = _names.Symbol(span);
                    lexer.Advance();
                    return lexer.Is('+') || lexer.Is('-') ? symbol with { Offset = ReadOffsets() } : symbol;
                }

            case PtxTokenKind.Number:
                return ReadNumber(negative: false);
            case PtxTokenKind.Punctuation when lexer.Char == '-':
                lexer.Advance();
                if (lexer.Kind != PtxTokenKind.Number)
                {
                    throw lexer.Error($"expected a number after '-', found {lexer.Describe()}");
                }

                return ReadNumber(negative: true);
            case PtxTokenKind.Punctuation when (aggregates & Aggregates.Address) != 0 && lexer.Char == '[':
                return ReadAddress();
            case PtxTokenKind.Punctuation when (aggregates & Aggregates.Vector) != 0 && lexer.Char == '{':
                return ReadVector();
            case PtxTokenKind.Punctuation when (aggregates & Aggregates.List) != 0 && lexer.Char == '(':
                return ReadList();
            default:
                throw lexer.Error($"expected an operand (a register, a number, a name, '[', '{{' or '('), found {lexer.Describe()}");
        }
    }

    /// <summary><c>[base]</c>, <c>[base+off]</c>, <c>[base+-off]</c>, <c>[base-off]</c>, <c>[off]</c>, or a texture/surface operand <c>[tex, {...}]</c>.</summary>
    private PtxOperand ReadAddress()
    {
        var lexer = _lexer;
        lexer.Advance();
        if (lexer.Kind == PtxTokenKind.Number || lexer.Is('-'))
        {
            var negative = lexer.Is('-');
            if (negative)
            {
                lexer.Advance();
            }

            var absolute = ReadInteger(negative, "an address");
            ExpectPunctuation(']', "']' to close the address");
            return new PtxAddress(null, absolute);
        }

        PtxOperand baseOperand;
        if (lexer.Kind == PtxTokenKind.Identifier && lexer.Span is not "_")
        {
            var span = lexer.Span;
            baseOperand = span[0] == '%' || IsNamedRegister(span) ? _names.Register(span) : _names.Symbol(span);
            lexer.Advance();
        }
        else
        {
            baseOperand = ReadPrimary(Aggregates.None);
        }

        var offset = lexer.Is('+') || lexer.Is('-') ? ReadOffsets() : 0;
        if (lexer.Is(']'))
        {
            lexer.Advance();
            return new PtxAddress(baseOperand, offset);
        }

        if (!lexer.Is(','))
        {
            throw lexer.Error($"expected '+', '-', ']' or ',' in the address, found {lexer.Describe()}");
        }

        var first = _operands.Count;
        _operands.Add(offset == 0 ? baseOperand : new PtxAddress(baseOperand, offset));
        while (lexer.Is(','))
        {
            lexer.Advance();
            _operands.Add(ReadPrimary(Aggregates.Vector));
        }

        if (!lexer.Is(']'))
        {
            _operands.RemoveRange(first, _operands.Count - first);
            throw lexer.Error($"expected ',' or ']' in the bracketed operand, found {lexer.Describe()}");
        }

        lexer.Advance();
        return new PtxBracket(PopOperands(first));
    }

    /// <summary>One or more <c>+N</c>, <c>-N</c>, <c>+-N</c> after a name: their sum.</summary>
    private long ReadOffsets()
    {
        var lexer = _lexer;
        long offset = 0;
        while (lexer.Is('+') || lexer.Is('-'))
        {
            var negative = lexer.Is('-');
            lexer.Advance();
            if (lexer.Is('-'))
            {
                negative = !negative;
                lexer.Advance();
            }

            offset = unchecked(offset + ReadInteger(negative, "an offset"));
        }

        return offset;
    }

    private PtxVector ReadVector()
    {
        var lexer = _lexer;
        lexer.Advance();
        var first = _operands.Count;
        while (true)
        {
            _operands.Add(ReadPrimary(Aggregates.None));
            if (lexer.Is(','))
            {
                lexer.Advance();
                continue;
            }

            if (lexer.Is('}'))
            {
                lexer.Advance();
                return new PtxVector(PopOperands(first));
            }

            _operands.RemoveRange(first, _operands.Count - first);
            throw lexer.Error($"expected ',' or '}}' in the vector operand, found {lexer.Describe()}");
        }
    }

    private PtxList ReadList()
    {
        var lexer = _lexer;
        lexer.Advance();
        var first = _operands.Count;
        if (!lexer.Is(')'))
        {
            while (true)
            {
                _operands.Add(ReadPrimary(Aggregates.None));
                if (lexer.Is(','))
                {
                    lexer.Advance();
                    continue;
                }

                if (lexer.Is(')'))
                {
                    break;
                }

                _operands.RemoveRange(first, _operands.Count - first);
                throw lexer.Error($"expected ',' or ')' in the list, found {lexer.Describe()}");
            }
        }

        lexer.Advance();
        return new PtxList(PopOperands(first));
    }

    /// <summary>Whether <paramref name="name"/> is a register declared without '%' in an open block: <c>x</c>, or <c>t3</c> of <c>t&lt;4&gt;</c>.</summary>
    private bool IsNamedRegister(ReadOnlySpan<char> name)
    {
        foreach (var (declared, count) in _namedRegisters)
        {
            if (count == 0 ? name.SequenceEqual(declared) : IsInRange(name, declared, count))
            {
                return true;
            }
        }

        return false;

        static bool IsInRange(ReadOnlySpan<char> name, string prefix, int count)
            => name.StartsWith(prefix, StringComparison.Ordinal)
                && name.Length > prefix.Length
                && (name.Length == prefix.Length + 1 || name[prefix.Length] != '0')
                && int.TryParse(name[prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                && index < count;
    }

    private PtxOperand[] PopOperands(int first)
    {
        var count = _operands.Count - first;
        if (count == 0)
        {
            return [];
        }

        var operands = new PtxOperand[count];
        _operands.CopyTo(first, operands, 0, count);
        _operands.RemoveRange(first, count);
        return operands;
    }

    // ---- Literals-----------------------------------------------------------------------------------------

    private PtxOperand ReadNumber(bool negative)
    {
        var lexer = _lexer;
        var text = lexer.Span;
        if (text.Length > 1 && text[0] == '0' && (text[1] | 0x20) is 'f' or 'd')
        {
            var single = (text[1] | 0x20) == 'f';
            var digits = text[2..];
            if (digits.Length != (single ? 8 : 16) || !ulong.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var bits))
            {
                throw lexer.Error($"expected {(single ? "8" : "16")} hex digits after {text[..2]} in a floating-point literal, found {lexer.Describe()}");
            }

            double value = single ? BitConverter.Int32BitsToSingle((int)bits) : BitConverter.Int64BitsToDouble((long)bits);
            lexer.Advance();
            return new PtxFloat(negative ? -value : value, single);
        }

        if (IsDecimalFloat(text))
        {
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                throw lexer.Error($"malformed floating-point literal {lexer.Describe()}");
            }

            lexer.Advance();
            return new PtxFloat(negative ? -value : value, Single: false);
        }

        var unsigned = text[^1] == 'U';
        return PtxNames.Integer(ReadInteger(negative, "an integer"), unsigned);
    }

    private static bool IsDecimalFloat(ReadOnlySpan<char> text)
        => !(text.Length > 1 && text[0] == '0' && (text[1] | 0x20) is 'x' or 'b') && text.IndexOfAny('.', 'e', 'E') >= 0;

    /// <summary>An integer literal (decimal, 0x hex, 0b binary, 0 octal, U suffix), as 64 bits.</summary>
    private long ReadInteger(bool negative, string what)
    {
        var lexer = _lexer;
        if (lexer.Kind != PtxTokenKind.Number)
        {
            throw lexer.Error($"expected {what}, found {lexer.Describe()}");
        }

        var text = lexer.Span;
        if (text[^1] == 'U')
        {
            text = text[..^1];
        }

        var radix = text switch
        {
            ['0', 'x' or 'X', ..] => 16,
            ['0', 'b' or 'B', ..] => 2,
            ['0', _, ..] => 8,
            _ => 10,
        };
        var digits = radix switch
        {
            16 or 2 => text[2..],
            8 => text[1..],
            _ => text,
        };
        if (digits.IsEmpty)
        {
            throw lexer.Error($"expected {what}, found {lexer.Describe()}");
        }

        ulong value = 0;
        foreach (var c in digits)
        {
            var digit = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
            if ((uint)digit >= (uint)radix)
            {
                throw lexer.Error($"expected {what}, found {lexer.Describe()} (not a base-{radix} integer)");
            }

            var next = unchecked((value * (ulong)radix) + (ulong)digit);
            if (value > (ulong.MaxValue - (ulong)digit) / (ulong)radix)
            {
                throw lexer.Error($"the integer {lexer.Describe()} does not fit in 64 bits");
            }

            value = next;
        }

        lexer.Advance();
        return negative ? unchecked(-(long)value) : unchecked((long)value);
    }

    private int ReadInt32(string what)
    {
        var lexer = _lexer;
        var (line, column, description) = (lexer.Line, lexer.Column, lexer.Describe());
        if (lexer.Kind != PtxTokenKind.Number || IsDecimalFloat(lexer.Span) || lexer.Span is ['0', 'f' or 'F' or 'd' or 'D', ..])
        {
            throw lexer.Error($"expected {what}, found {description}");
        }

        var value = ReadInteger(negative: false, what);
        return value is >= 0 and <= int.MaxValue ? (int)value : throw new PtxSyntaxException(line, column, $"expected {what}, found {description}, which is out of range");
    }

    [Flags]
    private enum Aggregates
    {
        None = 0,
        Address = 1,
        Vector = 2,
        List = 4,
        All = Address | Vector | List,
    }
}
