//! Weight files: manifest, npz, pth (restricted unpickler), download.
