using System.Globalization;
using System.Text;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// CUDA's device printf as the C library formats it: flags <c>-+ #0</c>, width and precision (given or <c>*</c>), the
/// length modifiers <c>hh h l ll z j t</c>, and the conversions <c>d i u o x X c s p f F e E g G a A %</c>. nvcc packs
/// the arguments in a buffer, each at an offset aligned to its size: integers of 4 bytes (8 with <c>l</c>, <c>ll</c>,
/// <c>z</c>, <c>j</c>, <c>t</c>), every floating-point one as an 8-byte double, pointers and strings as 8-byte addresses.
/// </summary>
internal static class DevicePrintf
{
    /// <summary>The text one launch keeps, as CUDA's printf FIFO holds by default (cudaLimitPrintfFifoSize, 1 MiB).</summary>
    public const int LaunchLimit = 1 << 20;

    /// <param name="format">The format string.</param>
    /// <param name="read">Reads the argument buffer: (offset, size in bytes) to the value's bits.</param>
    /// <param name="readString">Reads a string at a device address.</param>
    public static string Format(string format, Func<int, int, ulong> read, Func<ulong, string> readString)
    {
        var output = new StringBuilder();
        var offset = 0;
        ulong Next(int size)
        {
            offset = (offset + size - 1) / size * size;
            var value = read(offset, size);
            offset += size;
            return value;
        }

        for (var k = 0; k < format.Length; k++)
        {
            if (format[k] != '%')
            {
                output.Append(format[k]);
                continue;
            }

            var start = k++;
            var flags = "";
            while (k < format.Length && "-+ #0".Contains(format[k], StringComparison.Ordinal))
            {
                flags += format[k++];
            }

            var width = ReadNumber(format, ref k, () => (int)Next(4));
            var precision = -1;
            if (k < format.Length && format[k] == '.')
            {
                k++;
                precision = Math.Max(0, ReadNumber(format, ref k, () => (int)Next(4)) ?? 0);
            }

            if (width < 0)
            {
                flags += "-";
                width = -width;
            }

            var length = "";
            while (k < format.Length && "hlzjtL".Contains(format[k], StringComparison.Ordinal))
            {
                length += format[k++];
            }

            if (k >= format.Length)
            {
                output.Append(format, start, format.Length - start);
                break;
            }

            var conversion = format[k];
            var wide = length is "l" or "ll" or "z" or "j" or "t";
            string body;
            switch (conversion)
            {
                case '%':
                    output.Append('%');
                    continue;
                case 'd' or 'i':
                    body = Signed(Narrow(Next(wide ? 8 : 4), wide, length, signed: true), flags, precision);
                    break;
                case 'u' or 'o' or 'x' or 'X':
                    body = Unsigned(Narrow(Next(wide ? 8 : 4), wide, length, signed: false), conversion, flags, precision);
                    break;
                case 'c':
                    body = ((char)(byte)Next(4)).ToString();
                    break;
                case 's':
                    var s = readString(Next(8));
                    body = precision >= 0 && precision < s.Length ? s[..precision] : s;
                    break;
                case 'p':
                    body = "0x" + Next(8).ToString("x", CultureInfo.InvariantCulture);
                    break;
                case 'f' or 'F' or 'e' or 'E' or 'g' or 'G' or 'a' or 'A':
                    body = Float(BitConverter.Int64BitsToDouble((long)Next(8)), conversion, flags, precision);
                    break;
                default:
                    // Not a conversion C knows: printed as written, as the CUDA runtime does.
                    output.Append(format, start, k - start + 1);
                    continue;
            }

            output.Append(Pad(body, width ?? 0, flags, numeric: conversion is not ('c' or 's')));
        }

        return output.ToString();
    }

    private static int? ReadNumber(string format, ref int k, Func<int> star)
    {
        if (k < format.Length && format[k] == '*')
        {
            k++;
            return star();
        }

        var begin = k;
        while (k < format.Length && char.IsAsciiDigit(format[k]))
        {
            k++;
        }

        return k > begin ? int.Parse(format.AsSpan(begin, k - begin), CultureInfo.InvariantCulture) : null;
    }

    /// <summary>The argument's bits as the type the length modifier names (hh: char, h: short, none: int, wide: 64 bits).</summary>
    private static ulong Narrow(ulong bits, bool wide, string length, bool signed) => (wide, length, signed) switch
    {
        (true, _, _) => bits,
        (_, "hh", true) => (ulong)(long)(sbyte)bits,
        (_, "hh", false) => (byte)bits,
        (_, "h", true) => (ulong)(long)(short)bits,
        (_, "h", false) => (ushort)bits,
        (_, _, true) => (ulong)(long)(int)bits,
        _ => (uint)bits,
    };

    private static string Signed(ulong bits, string flags, int precision)
    {
        var value = (long)bits;
        var digits = value == long.MinValue ? "9223372036854775808" : Math.Abs(value).ToString(CultureInfo.InvariantCulture);
        digits = Precise(digits, precision);
        return Sign(value < 0, flags) + digits;
    }

    private static string Unsigned(ulong value, char conversion, string flags, int precision)
    {
        var digits = conversion switch
        {
            'o' => System.Convert.ToString((long)value, 8),
            'x' => value.ToString("x", CultureInfo.InvariantCulture),
            'X' => value.ToString("X", CultureInfo.InvariantCulture),
            _ => value.ToString(CultureInfo.InvariantCulture),
        };
        digits = Precise(digits, precision);
        if (flags.Contains('#', StringComparison.Ordinal) && value != 0)
        {
            digits = conversion switch { 'o' when !digits.StartsWith('0') => "0" + digits, 'x' => "0x" + digits, 'X' => "0X" + digits, _ => digits };
        }

        return digits;
    }

    /// <summary>An integer's digits with at least <paramref name="precision"/> of them (precision 0 and value 0: none).</summary>
    private static string Precise(string digits, int precision)
        => precision < 0 ? digits : precision == 0 && digits == "0" ? "" : digits.PadLeft(precision, '0');

    private static string Sign(bool negative, string flags)
        => negative ? "-" : flags.Contains('+', StringComparison.Ordinal) ? "+" : flags.Contains(' ', StringComparison.Ordinal) ? " " : "";

    private static string Float(double value, char conversion, string flags, int precision)
    {
        var upper = char.IsUpper(conversion);
        var negative = double.IsNegative(value);
        var magnitude = Math.Abs(value);
        string body;
        if (double.IsNaN(value))
        {
            body = "nan";
        }
        else if (double.IsInfinity(value))
        {
            body = "inf";
        }
        else
        {
            var p = precision < 0 ? 6 : precision;
            body = char.ToLowerInvariant(conversion) switch
            {
                'f' => magnitude.ToString("F" + p.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
                'e' => Exponential(magnitude, p),
                'a' => Hex(magnitude, precision),
                _ => General(magnitude, p == 0 ? 1 : p, flags.Contains('#', StringComparison.Ordinal)),
            };
            if (flags.Contains('#', StringComparison.Ordinal) && p == 0 && !body.Contains('.', StringComparison.Ordinal) && conversion is 'f' or 'F' or 'e' or 'E')
            {
                body = body.Contains('e', StringComparison.Ordinal) ? body.Replace("e", ".e", StringComparison.Ordinal) : body + ".";
            }
        }

        body = Sign(negative, flags) + body;
        return upper ? body.ToUpperInvariant() : body;
    }

    /// <summary>C's %e: d.ddde±XX, at least two exponent digits.</summary>
    private static string Exponential(double magnitude, int precision)
    {
        var text = magnitude.ToString((precision == 0 ? "0" : "0." + new string('0', precision)) + "e+00", CultureInfo.InvariantCulture);
        return text;
    }

    /// <summary>C's %g: %e or %f by the exponent, trailing zeros dropped unless '#'.</summary>
    private static string General(double magnitude, int precision, bool keepZeros)
    {
        var exponent = 0;
        if (magnitude != 0)
        {
            var rounded = double.Parse(Exponential(magnitude, precision - 1), CultureInfo.InvariantCulture);
            exponent = (int)Math.Floor(Math.Log10(rounded));
        }

        var text = exponent < -4 || exponent >= precision
            ? Exponential(magnitude, precision - 1)
            : magnitude.ToString("F" + (precision - 1 - exponent).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        if (keepZeros)
        {
            return text;
        }

        var e = text.IndexOf('e', StringComparison.Ordinal);
        var mantissa = e < 0 ? text : text[..e];
        if (mantissa.Contains('.', StringComparison.Ordinal))
        {
            mantissa = mantissa.TrimEnd('0').TrimEnd('.');
        }

        return e < 0 ? mantissa : mantissa + text[e..];
    }

    /// <summary>C's %a: 0x1.hhhp±d (normal numbers), 0x0.hhhp-1022 (subnormal), 0x0p+0.</summary>
    private static string Hex(double magnitude, int precision)
    {
        var bits = BitConverter.DoubleToInt64Bits(magnitude);
        var exponentBits = (int)((bits >> 52) & 0x7FF);
        var fraction = bits & 0xFFFFFFFFFFFFFL;
        if (exponentBits == 0 && fraction == 0)
        {
            return "0x0" + (precision > 0 ? "." + new string('0', precision) : "") + "p+0";
        }

        var exponent = exponentBits == 0 ? -1022 : exponentBits - 1023;
        var mantissa = ((exponentBits == 0 ? 0L : 1L) << 52) | fraction;
        string digits;
        if (precision is >= 0 and < 13)
        {
            // Rounded to the digits asked for, half to even, as glibc does (a carry makes the leading digit 2).
            var shift = 52 - (4 * precision);
            var rest = mantissa & ((1L << shift) - 1);
            var half = 1L << (shift - 1);
            mantissa >>= shift;
            if (rest > half || (rest == half && (mantissa & 1) == 1))
            {
                mantissa++;
            }

            digits = precision == 0 ? "" : (mantissa & ((1L << (4 * precision)) - 1)).ToString("x" + precision.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            mantissa >>= 4 * precision;
        }
        else
        {
            digits = fraction.ToString("x13", CultureInfo.InvariantCulture);
            digits = precision < 0 ? digits.TrimEnd('0') : digits.PadRight(precision, '0');
            mantissa >>= 52;
        }

        return $"0x{mantissa}{(digits.Length > 0 ? "." + digits : "")}p{(exponent >= 0 ? "+" : "")}{exponent}";
    }

    private static string Pad(string body, int width, string flags, bool numeric)
    {
        if (body.Length >= width)
        {
            return body;
        }

        if (flags.Contains('-', StringComparison.Ordinal))
        {
            return body.PadRight(width);
        }

        if (numeric && flags.Contains('0', StringComparison.Ordinal) && !body.Contains("inf", StringComparison.OrdinalIgnoreCase) && !body.Contains("nan", StringComparison.OrdinalIgnoreCase))
        {
            var sign = body.Length > 0 && body[0] is '-' or '+' or ' ' ? body[..1] : "";
            var prefix = body.StartsWith(sign + "0x", StringComparison.OrdinalIgnoreCase) ? body.Substring(sign.Length, 2) : "";
            var rest = body[(sign.Length + prefix.Length)..];
            return sign + prefix + rest.PadLeft(width - sign.Length - prefix.Length, '0');
        }

        return body.PadLeft(width);
    }
}
