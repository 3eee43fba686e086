namespace GpuPool.Ptx.Semantics;

/// <summary>The IEEE rounding of a floating-point result (.rn .rz .rm .rp).</summary>
public enum FloatRounding
{
    /// <summary>To nearest, ties to even.</summary>
    Rn,
    /// <summary>Toward zero.</summary>
    Rz,
    /// <summary>Toward negative infinity.</summary>
    Rm,
    /// <summary>Toward positive infinity.</summary>
    Rp,
}

/// <summary>The rounding of a float to an integral value (.rni .rzi .rmi .rpi), for cvt to an integer or to a float integer.</summary>
public enum IntRounding
{
    /// <summary>To the nearest integer, ties to even.</summary>
    Rni,
    /// <summary>Toward zero.</summary>
    Rzi,
    /// <summary>Toward negative infinity.</summary>
    Rmi,
    /// <summary>Toward positive infinity.</summary>
    Rpi,
}

/// <summary>The comparisons of setp/set. Lo, Ls, Hi, Hs are the unsigned ones; the ones ending in u are true when either operand is NaN.</summary>
public enum CompareOp
{
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

/// <summary>The fundamental PTX types a register or a cvt operand can have.</summary>
public enum ScalarType
{
    Pred,
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    BF16,
    TF32,
    F32,
    F64,
}

/// <summary>The byte-selection modes of prmt.b32; <see cref="Default"/> is the generic form with a 16-bit selector.</summary>
public enum PrmtMode
{
    Default,
    F4e,
    B4e,
    Rc8,
    Ecl,
    Ecr,
    Rc16,
}

/// <summary>The properties testp can ask of a float.</summary>
public enum TestpKind
{
    Finite,
    Infinite,
    Number,
    NotANumber,
    /// <summary>Normal, or zero: the ISA counts both zeros as normal.</summary>
    Normal,
    Subnormal,
}
