using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Driver calls a program may link without using them (pycuda's extension links about fifty): CUDA arrays and
/// texture or surface references, peer copies, OpenGL. Each
/// exists so that such a program starts, and fails with CUDA_ERROR_NOT_SUPPORTED and one line naming it when
/// called. They take no parameters here: on x86-64 (System V) the caller owns its arguments, so a function that
/// reads none of them and writes nothing serves any argument list.
/// </summary>
internal static unsafe partial class Cuda
{
    private const string NoArrays = "CUDA arrays and texture or surface references: the shim serves linear device memory only";

    private const string NoPeers = "peer copies: a lease has one device";

    [UnmanagedCallersOnly(EntryPoint = "cuArrayCreate_v2")]
    internal static CuResult LegacyArrayCreate_v2() => Unsupported("cuArrayCreate_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuArray3DCreate_v2")]
    internal static CuResult LegacyArray3DCreate_v2() => Unsupported("cuArray3DCreate_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuArrayGetDescriptor_v2")]
    internal static CuResult LegacyArrayGetDescriptor_v2() => Unsupported("cuArrayGetDescriptor_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuArray3DGetDescriptor_v2")]
    internal static CuResult LegacyArray3DGetDescriptor_v2() => Unsupported("cuArray3DGetDescriptor_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuArrayDestroy")]
    internal static CuResult LegacyArrayDestroy() => Unsupported("cuArrayDestroy", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyAtoA_v2")]
    internal static CuResult LegacyMemcpyAtoA_v2() => Unsupported("cuMemcpyAtoA_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyAtoD_v2")]
    internal static CuResult LegacyMemcpyAtoD_v2() => Unsupported("cuMemcpyAtoD_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyAtoH_v2")]
    internal static CuResult LegacyMemcpyAtoH_v2() => Unsupported("cuMemcpyAtoH_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyDtoA_v2")]
    internal static CuResult LegacyMemcpyDtoA_v2() => Unsupported("cuMemcpyDtoA_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyHtoA_v2")]
    internal static CuResult LegacyMemcpyHtoA_v2() => Unsupported("cuMemcpyHtoA_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuModuleGetTexRef")]
    internal static CuResult LegacyModuleGetTexRef() => Unsupported("cuModuleGetTexRef", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuModuleGetSurfRef")]
    internal static CuResult LegacyModuleGetSurfRef() => Unsupported("cuModuleGetSurfRef", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuSurfRefGetArray")]
    internal static CuResult LegacySurfRefGetArray() => Unsupported("cuSurfRefGetArray", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuSurfRefSetArray")]
    internal static CuResult LegacySurfRefSetArray() => Unsupported("cuSurfRefSetArray", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuParamSetTexRef")]
    internal static CuResult LegacyParamSetTexRef() => Unsupported("cuParamSetTexRef", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefCreate")]
    internal static CuResult LegacyTexRefCreate() => Unsupported("cuTexRefCreate", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefDestroy")]
    internal static CuResult LegacyTexRefDestroy() => Unsupported("cuTexRefDestroy", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetAddressMode")]
    internal static CuResult LegacyTexRefGetAddressMode() => Unsupported("cuTexRefGetAddressMode", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetAddress_v2")]
    internal static CuResult LegacyTexRefGetAddress_v2() => Unsupported("cuTexRefGetAddress_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetArray")]
    internal static CuResult LegacyTexRefGetArray() => Unsupported("cuTexRefGetArray", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetFilterMode")]
    internal static CuResult LegacyTexRefGetFilterMode() => Unsupported("cuTexRefGetFilterMode", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetFlags")]
    internal static CuResult LegacyTexRefGetFlags() => Unsupported("cuTexRefGetFlags", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefGetFormat")]
    internal static CuResult LegacyTexRefGetFormat() => Unsupported("cuTexRefGetFormat", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetAddress2D_v3")]
    internal static CuResult LegacyTexRefSetAddress2D_v3() => Unsupported("cuTexRefSetAddress2D_v3", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetAddressMode")]
    internal static CuResult LegacyTexRefSetAddressMode() => Unsupported("cuTexRefSetAddressMode", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetAddress_v2")]
    internal static CuResult LegacyTexRefSetAddress_v2() => Unsupported("cuTexRefSetAddress_v2", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetArray")]
    internal static CuResult LegacyTexRefSetArray() => Unsupported("cuTexRefSetArray", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetFilterMode")]
    internal static CuResult LegacyTexRefSetFilterMode() => Unsupported("cuTexRefSetFilterMode", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetFlags")]
    internal static CuResult LegacyTexRefSetFlags() => Unsupported("cuTexRefSetFlags", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuTexRefSetFormat")]
    internal static CuResult LegacyTexRefSetFormat() => Unsupported("cuTexRefSetFormat", NoArrays);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyPeer")]
    internal static CuResult LegacyMemcpyPeer() => Unsupported("cuMemcpyPeer", NoPeers);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpyPeerAsync")]
    internal static CuResult LegacyMemcpyPeerAsync() => Unsupported("cuMemcpyPeerAsync", NoPeers);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3DPeer")]
    internal static CuResult LegacyMemcpy3DPeer() => Unsupported("cuMemcpy3DPeer", NoPeers);

    [UnmanagedCallersOnly(EntryPoint = "cuMemcpy3DPeerAsync")]
    internal static CuResult LegacyMemcpy3DPeerAsync() => Unsupported("cuMemcpy3DPeerAsync", NoPeers);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamAttachMemAsync")]
    internal static CuResult LegacyStreamAttachMemAsync() => Unsupported("cuStreamAttachMemAsync", NoManagedMemory);

    [UnmanagedCallersOnly(EntryPoint = "cuGLInit")]
    internal static CuResult LegacyGLInit() => Unsupported("cuGLInit", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGLCtxCreate_v2")]
    internal static CuResult LegacyGLCtxCreate_v2() => Unsupported("cuGLCtxCreate_v2", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGLRegisterBufferObject")]
    internal static CuResult LegacyGLRegisterBufferObject() => Unsupported("cuGLRegisterBufferObject", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGLMapBufferObject_v2")]
    internal static CuResult LegacyGLMapBufferObject_v2() => Unsupported("cuGLMapBufferObject_v2", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGLUnmapBufferObject")]
    internal static CuResult LegacyGLUnmapBufferObject() => Unsupported("cuGLUnmapBufferObject", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGLUnregisterBufferObject")]
    internal static CuResult LegacyGLUnregisterBufferObject() => Unsupported("cuGLUnregisterBufferObject", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsGLRegisterBuffer")]
    internal static CuResult LegacyGraphicsGLRegisterBuffer() => Unsupported("cuGraphicsGLRegisterBuffer", NoGraphics);

    [UnmanagedCallersOnly(EntryPoint = "cuGraphicsGLRegisterImage")]
    internal static CuResult LegacyGraphicsGLRegisterImage() => Unsupported("cuGraphicsGLRegisterImage", NoGraphics);
}
