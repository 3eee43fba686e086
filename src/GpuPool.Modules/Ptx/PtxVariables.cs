using System.Buffers.Binary;
using System.Globalization;

namespace GpuPool.Modules.Ptx;

/// <summary>
/// Reads a PTX module's module-scope variables — <c>__device__</c> (<c>.global</c>) and <c>__constant__</c> (<c>.const</c>)
/// declarations — into <see cref="ModuleVariable"/>s: name, size, alignment and initial bytes, as nvcc and clang write them
/// (<c>.visible .global .align 4 .b8 x[40];</c>, <c>.const .align 4 .f32 y = 0f40200000;</c>, byte lists for structs and
/// arrays). <c>.extern</c> declarations are another module's variables and are left out; texture, sampler and surface
/// references are not memory and are left out too.
/// </summary>
/// <remarks>
/// A declaration this reader cannot turn into bytes is a <see cref="PtxFormatException"/> naming the variable, never a
/// variable with wrong contents: an initializer that is the address of another symbol (<c>generic(x)</c>, which nvcc writes
/// for a pointer initialized with <c>&amp;x</c>) is such a declaration, since where <c>x</c> lives is decided only when the
/// module is loaded.
/// </remarks>
public static class PtxVariables
{
    /// <summary>
    /// The largest variable whose initial bytes are read. The bytes are held in memory before any lease's limit is
    /// checked, so a short initializer of an enormous array must not make the reader allocate its size.
    /// </summary>
    public const long MaxInitializedBytes = 64L << 20;

    /// <summary>The module-scope variables of <paramref name="ptxText"/>, in declaration order.</summary>
    /// <exception cref="PtxFormatException">A declaration cannot be read; the message names it.</exception>
    public static IReadOnlyList<ModuleVariable> Parse(string ptxText)
    {
        ArgumentNullException.ThrowIfNull(ptxText);
        var tokens = PtxModule.Tokenize(ptxText);
        var variables = new List<ModuleVariable>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        int braces = 0, parens = 0;
        var external = false;
        for (var i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            switch (t)
            {
                case "{":
                    braces++;
                    continue;
                case "}":
                    braces--;
                    continue;
                case "(":
                    parens++;
                    continue;
                case ")":
                    parens--;
                    continue;
            }

            // Function bodies, parameter lists (.ptr .global) and debug sections hold no module-scope declarations.
            if (braces != 0 || parens != 0)
            {
                continue;
            }

            if (t is ".global" or ".const")
            {
                var end = StatementEnd(tokens, i);
                if (!external)
                {
                    foreach (var v in ReadDeclaration(tokens, i + 1, end, t == ".global" ? VariableSpace.Global : VariableSpace.Const))
                    {
                        if (!names.Add(v.Name))
                        {
                            throw new PtxFormatException($"module variable '{v.Name}' is declared twice");
                        }

                        variables.Add(v);
                    }
                }

                i = end;
                external = false;
                continue;
            }

            // Linking directives come before the state space they qualify; anything else ends their reach.
            external = t switch
            {
                ".extern" => true,
                ".visible" or ".weak" or ".common" => external,
                _ => false,
            };
        }

        return variables;
    }

    /// <summary>The index of the ';' that ends the declaration starting at <paramref name="start"/> (braces of its initializer skipped).</summary>
    private static int StatementEnd(List<string> tokens, int start)
    {
        var depth = 0;
        for (var j = start + 1; j < tokens.Count; j++)
        {
            switch (tokens[j])
            {
                case "{" or "(":
                    depth++;
                    break;
                case "}" or ")":
                    depth--;
                    break;
                case ";" when depth == 0:
                    return j;
            }
        }

        throw Unreadable(tokens, start, tokens.Count, "it never ends with ';'");
    }

    /// <summary>One declaration's tokens between its state space and its ';': qualifiers, a type, then one or more declarators.</summary>
    private static IEnumerable<ModuleVariable> ReadDeclaration(List<string> tokens, int start, int end, VariableSpace space)
    {
        int align = 0, scalarSize = 0, vector = 1, j = start;
        var kind = ScalarKind.Integer;
        for (; j < end && tokens[j].StartsWith('.'); j++)
        {
            var t = tokens[j];
            if (t == ".align")
            {
                if (j + 1 >= end || !int.TryParse(tokens[j + 1], NumberStyles.None, CultureInfo.InvariantCulture, out align) || align <= 0 || (align & (align - 1)) != 0)
                {
                    throw Unreadable(tokens, start - 1, end, ".align is not followed by a power of two");
                }

                j++;
            }
            else if (t is ".v2" or ".v4" or ".v8")
            {
                vector = t[2] - '0';
            }
            else if (t is ".texref" or ".samplerref" or ".surfref")
            {
                // Texture, sampler and surface references: handles the driver binds, not memory.
                yield break;
            }
            else if (t == ".attribute")
            {
                // .attribute(.managed): __managed__ memory is still a variable of the module.
                j = SkipParenthesized(tokens, j + 1, end);
            }
            else if (Scalar(t) is { Size: > 0 } scalar)
            {
                (scalarSize, kind) = scalar;
            }
            else
            {
                throw Unreadable(tokens, start - 1, end, $"'{t}' is not a qualifier or type this reader knows");
            }
        }

        if (scalarSize == 0)
        {
            throw Unreadable(tokens, start - 1, end, "it has no type");
        }

        if (j >= end)
        {
            throw Unreadable(tokens, start - 1, end, "it names no variable");
        }

        var type = new ElementType(scalarSize, kind);
        var alignment = align > 0 ? align : scalarSize * vector;
        foreach (var (from, to) in Declarators(tokens, j, end))
        {
            yield return ReadDeclarator(tokens, from, to, space, type, vector, alignment);
        }
    }

    /// <summary>The declarators of a declaration, split at its top-level commas.</summary>
    private static List<(int From, int To)> Declarators(List<string> tokens, int start, int end)
    {
        var list = new List<(int, int)>();
        int depth = 0, from = start;
        for (var j = start; j < end; j++)
        {
            switch (tokens[j])
            {
                case "{" or "(" or "[":
                    depth++;
                    break;
                case "}" or ")" or "]":
                    depth--;
                    break;
                case "," when depth == 0:
                    list.Add((from, j));
                    from = j + 1;
                    break;
            }
        }

        list.Add((from, end));
        return list;
    }

    /// <summary><c>name [ '[' n ']' ]* [ = initializer ]</c>.</summary>
    private static ModuleVariable ReadDeclarator(List<string> tokens, int start, int end, VariableSpace space, ElementType type, int vector, int align)
    {
        if (start >= end || !IsIdentifier(tokens[start]))
        {
            throw Unreadable(tokens, start, end, "it names no variable");
        }

        var name = tokens[start];
        var dims = new List<long>();
        var j = start + 1;
        while (j < end && tokens[j] == "[")
        {
            if (j + 1 < end && tokens[j + 1] == "]")
            {
                if (dims.Count > 0)
                {
                    throw Bad(name, "only an array's first dimension may be left for its initializer to size");
                }

                dims.Add(-1);
                j += 2;
                continue;
            }

            if (j + 2 >= end || tokens[j + 2] != "]" || !TryInteger(tokens[j + 1], out var n) || n == 0 || n > (ulong)long.MaxValue)
            {
                throw Bad(name, $"'{Excerpt(tokens, j, Math.Min(end, j + 3))}' is not an array size of at least 1");
            }

            dims.Add((long)n);
            j += 3;
        }

        if (vector > 1)
        {
            dims.Add(vector);
        }

        Node? init = null;
        if (j < end)
        {
            if (tokens[j] != "=")
            {
                throw Bad(name, $"'{tokens[j]}' follows its name where '=' or ';' was expected");
            }

            var at = j + 1;
            init = ReadNode(tokens, ref at, end, name);
            if (at != end)
            {
                throw Bad(name, $"'{Excerpt(tokens, at, end)}' follows its initializer");
            }
        }

        if (dims.Count > 0 && dims[0] < 0)
        {
            // x[] = {...}: as many elements as the initializer lists.
            dims[0] = init is List { Items.Count: > 0 } list ? list.Items.Count : throw Bad(name, "an array without a size needs an initializer list to size it");
        }

        long elements = 1;
        try
        {
            foreach (var d in dims)
            {
                elements = checked(elements * d);
            }

            var size = checked(elements * type.Size);
            var bytes = init is null ? [] : Initialize(name, size, type, dims, init);
            return new ModuleVariable(name, size, align, space, bytes);
        }
        catch (OverflowException)
        {
            throw Bad(name, "its size is more than any memory holds");
        }
    }

    private static byte[] Initialize(string name, long size, ElementType type, List<long> dims, Node init)
    {
        if (size > MaxInitializedBytes)
        {
            throw Bad(name, $"it is {size} bytes with an initializer, more than the {MaxInitializedBytes} bytes this reader initializes");
        }

        var bytes = new byte[size];
        var strides = new long[dims.Count + 1];
        strides[dims.Count] = 1;
        for (var k = dims.Count - 1; k >= 0; k--)
        {
            strides[k] = strides[k + 1] * dims[k];
        }

        Place(name, bytes, type, dims, strides, 0, 0, init);
        return bytes;
    }

    /// <summary>Writes <paramref name="node"/> as the sub-array at dimension <paramref name="level"/> starting at element <paramref name="element"/>.</summary>
    private static void Place(string name, byte[] bytes, ElementType type, List<long> dims, long[] strides, int level, long element, Node node)
    {
        if (level == dims.Count)
        {
            // One element: a value, or a value in braces as C allows.
            var leaf = node switch
            {
                Leaf l => l,
                List { Items: [Leaf only] } => only,
                _ => throw Bad(name, "an initializer has more braces than the variable has dimensions"),
            };
            Write(name, bytes.AsSpan((int)(element * type.Size), type.Size), type, leaf.Text);
            return;
        }

        if (node is not List list)
        {
            throw Bad(name, "an array is initialized with a single value; use braces");
        }

        if (list.Items.All(static n => n is Leaf) && level < dims.Count - 1)
        {
            // Braces left out inside, as in C: the values fill the elements in order.
            if (list.Items.Count > strides[level])
            {
                throw Bad(name, $"its initializer lists {list.Items.Count} values for {strides[level]} elements");
            }

            for (var k = 0; k < list.Items.Count; k++)
            {
                Write(name, bytes.AsSpan((int)((element + k) * type.Size), type.Size), type, ((Leaf)list.Items[k]).Text);
            }

            return;
        }

        if (list.Items.Count > dims[level])
        {
            throw Bad(name, $"its initializer lists {list.Items.Count} values where {dims[level]} fit");
        }

        for (var k = 0; k < list.Items.Count; k++)
        {
            Place(name, bytes, type, dims, strides, level + 1, element + (k * strides[level + 1]), list.Items[k]);
        }
    }

    /// <summary>Reads one initializer: a brace list of initializers, or a value (its tokens up to the next ',', '}' or the end).</summary>
    private static Node ReadNode(List<string> tokens, ref int at, int end, string name)
    {
        if (at >= end)
        {
            throw Bad(name, "'=' is followed by no value");
        }

        if (tokens[at] == "{")
        {
            at++;
            var items = new List<Node>();
            while (true)
            {
                if (at >= end)
                {
                    throw Bad(name, "a '{' of its initializer is never closed");
                }

                if (tokens[at] == "}" && items.Count == 0)
                {
                    at++;
                    return new List(items);
                }

                items.Add(ReadNode(tokens, ref at, end, name));
                if (at < end && tokens[at] == ",")
                {
                    at++;
                }
                else if (at < end && tokens[at] == "}")
                {
                    at++;
                    return new List(items);
                }
                else
                {
                    throw Bad(name, at < end ? $"'{tokens[at]}' in its initializer where ',' or '}}' was expected" : "a '{' of its initializer is never closed");
                }
            }
        }

        var from = at;
        var depth = 0;
        while (at < end && (depth > 0 || tokens[at] is not ("," or "}")))
        {
            // A value is one word, or words joined by operators (1.5e-3, generic(x)+4): two words in a row are two values.
            if (at > from && IsWord(tokens[at - 1]) && IsWord(tokens[at]))
            {
                throw Bad(name, $"'{tokens[at]}' in its initializer where ',' or '}}' was expected");
            }

            depth += tokens[at] switch
            {
                "(" => 1,
                ")" => -1,
                _ => 0,
            };
            at++;
        }

        return new Leaf(string.Concat(tokens.GetRange(from, at - from)));
    }

    /// <summary>Writes one value into its element's bytes, little-endian.</summary>
    private static void Write(string name, Span<byte> target, ElementType type, string text)
    {
        if (text.Length > 0 && (char.IsAsciiLetter(text[0]) || text[0] is '_' or '$' or '%') && !IsFloatBits(text))
        {
            throw Bad(name, $"its initializer {text} is the address of another symbol, which this reader does not place (the address is known only once the module is loaded)");
        }

        if (type.Kind == ScalarKind.Integer)
        {
            if (!TrySignedInteger(text, out var negative, out var magnitude))
            {
                throw Bad(name, $"'{text}' is not an integer");
            }

            WriteInteger(name, target, negative, magnitude, text);
            return;
        }

        // Floating point: a bit pattern (0f…, 0d…), or a number. A plain integer is a number too, as for a C float.
        double value;
        if (TryFloatBits(text, out var bits, out var isDouble))
        {
            if (type.Size == 4 && !isDouble)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(target, (uint)bits);
                return;
            }

            if (type.Size == 8 && isDouble)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(target, bits);
                return;
            }

            value = isDouble ? BitConverter.UInt64BitsToDouble(bits) : BitConverter.UInt32BitsToSingle((uint)bits);
        }
        else if (type.Kind == ScalarKind.Half && TrySignedInteger(text, out var negative, out var magnitude) && !negative && !text.Contains('.', StringComparison.Ordinal))
        {
            // .f16/.bf16 initializers are written as their 16-bit patterns (0x3C00), as ptxas takes them.
            WriteInteger(name, target, false, magnitude, text);
            return;
        }
        else if (!TryDecimal(text, out value))
        {
            throw Bad(name, $"'{text}' is not a floating-point value");
        }

        switch (type.Size, type.Kind)
        {
            case (8, _):
                BinaryPrimitives.WriteDoubleLittleEndian(target, value);
                break;
            case (4, ScalarKind.Float):
                BinaryPrimitives.WriteSingleLittleEndian(target, (float)value);
                break;
            case (2, ScalarKind.Half):
                BinaryPrimitives.WriteHalfLittleEndian(target, (Half)value);
                break;
            case (2, ScalarKind.BFloat):
                BinaryPrimitives.WriteUInt16LittleEndian(target, ToBFloat16((float)value));
                break;
            default:
                throw new InvalidOperationException($"no {type.Size}-byte {type.Kind} type");
        }
    }

    private static void WriteInteger(string name, Span<byte> target, bool negative, UInt128 magnitude, string text)
    {
        // A value fits when it fits the width as a signed or as an unsigned number: -1 in a .u64, 255 in a .b8.
        var bits = target.Length * 8;
        var unsignedMax = bits == 128 ? UInt128.MaxValue : (UInt128.One << bits) - 1;
        var fits = negative ? magnitude <= (UInt128.One << (bits - 1)) : magnitude <= unsignedMax;
        if (!fits)
        {
            throw Bad(name, $"{text} does not fit its {target.Length}-byte elements");
        }

        var value = negative ? UInt128.Zero - magnitude : magnitude;
        for (var b = 0; b < target.Length; b++)
        {
            target[b] = (byte)(value >> (8 * b));
        }
    }

    /// <summary>Round to nearest even, as a conversion to bfloat16 does.</summary>
    private static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>PTX integer literals: decimal, 0x hex, 0b binary, 0 octal, with an optional U suffix and a sign.</summary>
    private static bool TrySignedInteger(string text, out bool negative, out UInt128 magnitude)
    {
        negative = text.StartsWith('-');
        var digits = text.StartsWith('-') || text.StartsWith('+') ? text[1..] : text;
        return TryInteger(digits, out magnitude);
    }

    private static bool TryInteger(string text, out UInt128 value)
    {
        value = 0;
        if (text.EndsWith('U') || text.EndsWith('u'))
        {
            text = text[..^1];
        }

        if (text.Length == 0)
        {
            return false;
        }

        int radix = 10, from = 0;
        if (text.Length > 2 && text[0] == '0' && text[1] is 'x' or 'X')
        {
            (radix, from) = (16, 2);
        }
        else if (text.Length > 2 && text[0] == '0' && text[1] is 'b' or 'B')
        {
            (radix, from) = (2, 2);
        }
        else if (text.Length > 1 && text[0] == '0')
        {
            (radix, from) = (8, 1);
        }

        for (var i = from; i < text.Length; i++)
        {
            var digit = char.IsAsciiDigit(text[i]) ? text[i] - '0' : char.IsAsciiHexDigit(text[i]) ? (char.ToLowerInvariant(text[i]) - 'a') + 10 : 99;
            if (digit >= radix)
            {
                return false;
            }

            try
            {
                value = checked((value * (uint)radix) + (uint)digit);
            }
            catch (OverflowException)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsFloatBits(string text) => TryFloatBits(text, out _, out _);

    /// <summary><c>0f</c> and eight hex digits (a float's bits) or <c>0d</c> and sixteen (a double's).</summary>
    private static bool TryFloatBits(string text, out ulong bits, out bool isDouble)
    {
        bits = 0;
        isDouble = text.Length == 18 && text[0] == '0' && text[1] is 'd' or 'D';
        var isFloat = text.Length == 10 && text[0] == '0' && text[1] is 'f' or 'F';
        return (isDouble || isFloat) && ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bits);
    }

    private static bool TryDecimal(string text, out double value)
        => double.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out value);

    private static int SkipParenthesized(List<string> tokens, int at, int end)
    {
        if (at >= end || tokens[at] != "(")
        {
            return at - 1;
        }

        var depth = 0;
        for (var j = at; j < end; j++)
        {
            depth += tokens[j] switch
            {
                "(" => 1,
                ")" => -1,
                _ => 0,
            };
            if (depth == 0)
            {
                return j;
            }
        }

        return end;
    }

    private static (int Size, ScalarKind Kind) Scalar(string t) => t switch
    {
        ".b8" or ".u8" or ".s8" or ".pred" => (1, ScalarKind.Integer),
        ".b16" or ".u16" or ".s16" => (2, ScalarKind.Integer),
        ".f16" => (2, ScalarKind.Half),
        ".bf16" => (2, ScalarKind.BFloat),
        ".b32" or ".u32" or ".s32" => (4, ScalarKind.Integer),
        ".f32" => (4, ScalarKind.Float),
        ".f16x2" or ".bf16x2" => (4, ScalarKind.Integer),  // a packed pair is initialized by its bit pattern
        ".b64" or ".u64" or ".s64" => (8, ScalarKind.Integer),
        ".f64" => (8, ScalarKind.Float),
        ".b128" => (16, ScalarKind.Integer),
        _ => (0, ScalarKind.Integer),
    };

    private static bool IsIdentifier(string t)
        => t.Length > 0 && (char.IsAsciiLetter(t[0]) || ((t[0] is '_' or '$' or '%') && t.Length > 1)) && t.All(static c => char.IsAsciiLetterOrDigit(c) || c is '_' or '$' or '%');

    private static bool IsWord(string t) => char.IsAsciiLetterOrDigit(t[0]) || t[0] is '.' or '_' or '$' or '%';

    private static PtxFormatException Bad(string name, string reason) => new($"cannot read module variable '{name}': {reason}");

    /// <summary>A declaration that fails before its name is known is named by its own text.</summary>
    private static PtxFormatException Unreadable(List<string> tokens, int start, int end, string reason)
    {
        var name = tokens.Skip(start).Take(end - start).Where(IsIdentifier).FirstOrDefault() is { } n ? $"module variable '{n}'" : "a declaration";
        return new PtxFormatException($"cannot read {name} ('{Excerpt(tokens, start, end)}'): {reason}");
    }

    private static string Excerpt(List<string> tokens, int start, int end)
    {
        var text = string.Join(' ', tokens.Skip(start).Take(Math.Min(end - start, 24)));
        return end - start > 24 ? text + " ..." : text;
    }

    private enum ScalarKind
    {
        Integer,
        Float,
        Half,
        BFloat,
    }

    private readonly record struct ElementType(int Size, ScalarKind Kind);

    private abstract record Node;

    private sealed record Leaf(string Text) : Node;

    private sealed record List(List<Node> Items) : Node;
}
