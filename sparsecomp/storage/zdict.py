"""The format-version-3 preset dictionary ``D`` (``docs/FORMAT.md``, appendix): 4096 bytes.

A constant of the format: never edit it (``tests/test_storage.py`` checks its SHA-256 against
``spec.ZDICT_SHA256``). How it was made: ``scripts/make_zdict.py``.
"""

__all__ = ["ZDICT"]

ZDICT = (
    b's_name":"BatchNormalization","confse","config":{"name":"dense_1","trainable":true,"dtype":{"modu'
    b'le":"keras","class_name":"DTypePolicy","config":{"name":"float32"},"registered_name":null},"unit'
    b's":10,"activation":"softmax","use_class_name":"Ones","config":{},"registered_name":null},"moving'
    b'_mean_initializer":{"module":"keras.initializers","class_name":"Zeros","config":{},"registered_n'
    b'ame":null},"moving_variance_initiaass_name":"Sequential","config":{"name":"sequential","trainabl'
    b'e":true,"dtype":{"module":"keras","class_name":"DTypePolicy","config":{"name":"float32"},"regist'
    b'ered_name":null},"layers":[{"modulegistered_name":null},"max_value":null,"negative_slope":0.0,"t'
    b'hreshold":0.0},"registered_name":null},{"module":"keras.layers","class_name":"MaxPooling2D","con'
    b'fig":{"name":"max_pooling2d","trainput_shape":[null,16]},"compile_config":{"optimizer":{"module"'
    b':"keras.optimizers","class_name":"Adam","config":{"name":"adam","learning_rate":0.00100000004749'
    b'74513,"weight_decay":null,"clipnorull},"pool_size":[2,2],"padding":"valid","strides":[2,2],"data'
    b'_format":"channels_last"},"registered_name":null},{"module":"keras.layers","class_name":"Conv2D"'
    b',"config":{"name":"conv2d_1","trai":[null,224,224,64]},"name":"batch_normalization","inbound_nod'
    b'es":[{"args":[{"class_name":"__keras_tensor__","config":{"shape":[null,224,224,64],"dtype":"floa'
    b't32","keras_history":["conv2d",0,0null},"axis":-1,"momentum":0.99,"epsilon":0.001,"center":true,'
    b'"scale":true,"beta_initializer":{"module":"keras.initializers","class_name":"Zeros","config":{},'
    b'"registered_name":null},"gamma_ini_average_pooling2d",0,0]}}],"kwargs":{}}]}],"input_layers":["i'
    b'nput_layer",0,0],"output_layers":["dense",0,0]},"registered_name":"Functional","build_config":{"'
    b'input_shape":null},"compile_config":null},"beta_regularizer":null,"gamma_regularizer":null,"beta'
    b'_constraint":null,"gamma_constraint":null,"synchronized":false,"renorm":false,"renorm_clipping":'
    b'null,"renorm_momentum":0.99},"registered_name":null},"loss":"sparse_categorical_crossentropy","l'
    b'oss_weights":null,"metrics":["accuracy"],"weighted_metrics":null,"run_eagerly":false,"steps_per_'
    b'execution":1,"jit_compile":false}}tered_name":null},"filters":32,"kernel_size":[1,1],"strides":['
    b'1,1],"padding":"valid","data_format":"channels_last","dilation_rate":[1,1],"groups":1,"activatio'
    b'n":"linear","use_bias":false,"kernpnorm":null,"global_clipnorm":null,"clipvalue":null,"use_ema":'
    b'false,"ema_momentum":0.99,"ema_overwrite_frequency":null,"loss_scale_factor":null,"gradient_accu'
    b'mulation_steps":null,"momentum":0.name":"InputLayer","config":{"batch_shape":[null,32,32,3],"dty'
    b'pe":"float32","sparse":false,"ragged":false,"name":"input_layer","optional":false},"registered_n'
    b'ame":null,"name":"input_layer","in1,1],"groups":1,"activation":"relu","use_bias":true,"kernel_in'
    b'itializer":{"module":"keras.initializers","class_name":"GlorotUniform","config":{"seed":null,"in'
    b'put_axes":null,"output_axes":null}me":null},"kernel_regularizer":null,"bias_regularizer":null,"k'
    b'ernel_constraint":null,"bias_constraint":null,"quantization_config":null},"registered_name":null'
    b',"build_config":{"input_shape":[nu},{"module":"keras.layers","class_name":"Dense","config":{"nam'
    b'e":"dense","trainable":true,"dtype":{"module":"keras","class_name":"DTypePolicy","config":{"name'
    b'":"float32"},"registered_name":nul"source":{"name":".keras","bytes":"category":"optimizer"},"att'
    b'rs":true},"codec":"shared","params":{"order":"col","k":{"writer":"sparsecomp 0.","kind":"model",'
    b'"source":null,"min_ratio":1.0,"level":2,"optimizer_dropped":true,"keras_version":"3.","blobs":[]'
    b',"tensors":["files":[{"name":"config.json","compress_type":0,"tree":false,"blob":0,"at":0,"strea'
    b'm":["zdict","sha256":"{"path":"dense/1","shape":[32],"dtype":"<f4","nnz":32,"codec":"planes","pa'
    b'rams":{},"blob":0,"at":0,"streams":[["raw",32,32],["raw",32,32],["raw",32,32],["deflate","digest'
    b'":"","name":"dense/bias"},{"path":"conv2d/0","shape":[3,3,3,32],"dtype":"<f4","nnz":1,"codec":"g'
    b'aps","params":{"order":"row"},"blob":0,"at":0,"streams":[["deflate",1,1],["raw",1,1],["raw",1,1]'
    b',["deflate",1,1],["deflate","digest":"","name":"conv2d/kernel"},'
)
