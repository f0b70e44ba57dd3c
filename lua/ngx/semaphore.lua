-- require 'ngx.semaphore' outside OpenResty: the semaphore of asio.ngx.
return require('asio.ngx').semaphore
