namespace GpuPool.Ptx.Syntax;

/// <summary>
/// The strings of one parse, each spelling allocated once: names, opcodes with their modifier lists, and registers
/// (a register operand is immutable, so every use of %r1 shares one object).
/// </summary>
internal sealed class PtxNames
{
    private readonly Dictionary<string, string> _strings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _stringLookup;
    private readonly Dictionary<string, (string Opcode, string[] Modifiers)> _mnemonics = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Opcode, string[] Modifiers)>.AlternateLookup<ReadOnlySpan<char>> _mnemonicLookup;
    private readonly Dictionary<string, PtxRegister> _registers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PtxRegister>.AlternateLookup<ReadOnlySpan<char>> _registerLookup;
    private readonly Dictionary<string, PtxSymbol> _symbols = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PtxSymbol>.AlternateLookup<ReadOnlySpan<char>> _symbolLookup;

    public PtxNames()
    {
        _symbolLookup = _symbols.GetAlternateLookup<ReadOnlySpan<char>>();
        _stringLookup = _strings.GetAlternateLookup<ReadOnlySpan<char>>();
        _mnemonicLookup = _mnemonics.GetAlternateLookup<ReadOnlySpan<char>>();
        _registerLookup = _registers.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public string Intern(ReadOnlySpan<char> name)
    {
        if (!_stringLookup.TryGetValue(name, out var interned))
        {
            interned = name.ToString();
            _strings.Add(interned, interned);
        }

        return interned;
    }

    /// <summary><c>ld.global.nc.v4.f32</c> as "ld" and ["global", "nc", "v4", "f32"]; the array is shared by every use.</summary>
    public (string Opcode, string[] Modifiers) Mnemonic(ReadOnlySpan<char> spelling)
    {
        if (_mnemonicLookup.TryGetValue(spelling, out var mnemonic))
        {
            return mnemonic;
        }

        var parts = spelling.Count('.');
        var modifiers = parts == 0 ? [] : new string[parts];
        var dot = spelling.IndexOf('.');
        var opcode = Intern(dot < 0 ? spelling : spelling[..dot]);
        for (var i = 0; i < parts; i++)
        {
            var rest = spelling[(dot + 1)..];
            var next = rest.IndexOf('.');
            modifiers[i] = Intern(next < 0 ? rest : rest[..next]);
            dot += next + 1;
        }

        mnemonic = (opcode, modifiers);
        _mnemonics.Add(spelling.ToString(), mnemonic);
        return mnemonic;
    }

    /// <summary>A symbol without an offset (a label, a parameter, a function), shared by every use of the name.</summary>
    public PtxSymbol Symbol(ReadOnlySpan<char> name)
    {
        if (!_symbolLookup.TryGetValue(name, out var symbol))
        {
            symbol = new PtxSymbol(Intern(name));
            _symbols.Add(symbol.Name, symbol);
        }

        return symbol;
    }

    public PtxRegister Register(ReadOnlySpan<char> name)
    {
        if (!_registerLookup.TryGetValue(name, out var register))
        {
            register = new PtxRegister(Intern(name));
            _registers.Add(register.Name, register);
        }

        return register;
    }

    /// <summary>The small signed integers most operands are, allocated once for every parse.</summary>
    public static PtxInteger Integer(long value, bool unsigned)
        => value is >= SmallMin and <= SmallMax ? SmallIntegers[unsigned ? 1 : 0][value - SmallMin] : new PtxInteger(value, unsigned);

    private const long SmallMin = -64;
    private const long SmallMax = 1023;

    private static readonly PtxInteger[][] SmallIntegers =
    [
        [.. Enumerable.Range((int)SmallMin, (int)(SmallMax - SmallMin + 1)).Select(v => new PtxInteger(v))],
        [.. Enumerable.Range((int)SmallMin, (int)(SmallMax - SmallMin + 1)).Select(v => new PtxInteger(v, Unsigned: true))],
    ];
}
